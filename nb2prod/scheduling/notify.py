"""Notify on a fire's outcome: a webhook (JSON POST) and/or a command, each on a background thread so a slow
or failing notifier never delays or breaks the scheduler (failures are logged)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import urllib.request
from typing import Any

from nb2prod import contracts
from nb2prod.secret import redact_uri

log = logging.getLogger("nb2prod.scheduler")
WEBHOOK_TIMEOUT_S = 10
COMMAND_TIMEOUT_S = 60


def body(schedule, fire) -> dict[str, Any]:
    """The JSON body: schedule, scheduled time, run id, status, error, MLflow run id and link, and the run's
    gate (``{status, reason}``), drift (``{drifted, reason, columns, ...}``) and promotion outcome."""
    return {"schedule": schedule.name, "scheduled_time": fire.scheduled_time.isoformat() + "Z",
            "run_id": fire.run_id, "status": fire.status, "attempts": fire.attempts, "error": fire.error,
            "mlflow_run_id": fire.mlflow_run_id, "mlflow_link": mlflow_link(fire.run_id, fire.mlflow_run_id),
            **_checks(fire.run_id)}


def _checks(run_id: str | None) -> dict[str, Any]:
    if not run_id:
        return {"gate": None, "drift": None, "promotion": None}
    try:
        from nb2prod.store import runs

        record = runs.get_run(run_id)
    except Exception:  # noqa: BLE001 - the notification goes out regardless
        return {"gate": None, "drift": None, "promotion": None}
    return {"gate": record["gate"], "drift": record["drift"], "promotion": record["promotion"]}


def needs_attention(payload: dict[str, Any]) -> bool:
    """A run that ended ``done`` but whose gate failed or whose data drifted is notified like a failure."""
    return (payload.get("gate") or {}).get("status") == "failed" or bool((payload.get("drift") or {}).get("drifted"))


def mlflow_link(run_id: str | None, mlflow_run_id: str | None) -> str | None:
    """The link to the fire's MLflow run (:func:`nb2prod.contracts.mlflow_link`) without the credentials a
    tracking URI may hold; None when unknown."""
    if not mlflow_run_id:
        return None
    record: dict[str, Any] = {}
    if run_id:
        try:
            from nb2prod.store import runs

            record = runs.get_run(run_id)
        except Exception:  # noqa: BLE001 - a link is a nicety
            pass
    return redact_uri(contracts.mlflow_link({**record, "mlflow_run_id": mlflow_run_id, "mlflow_url": None}))


def post(url: str, payload: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S).close()


def command(cmd: str, payload: dict[str, Any]) -> None:
    """Run ``cmd`` in a shell with NB2PROD_SCHEDULE, NB2PROD_STATUS, ... set and the JSON body on stdin. It runs
    in a session of its own: at the timeout everything it started is killed, not only the shell."""
    env = {**os.environ, **{f"NB2PROD_{k.upper()}": str(v) for k, v in payload.items() if v is not None}}
    with subprocess.Popen(cmd, shell=True, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True) as proc:
        try:
            proc.communicate(json.dumps(payload).encode(), timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


class Notifier:
    """Sends notifications on daemon threads; ``wait()`` lets ``scheduler --once`` finish them before exiting."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    def send(self, url: str | None, cmd: str | None, payload: dict[str, Any]) -> None:
        for target, arg in ((post, url), (command, cmd)):
            if arg:
                thread = threading.Thread(target=_safe, args=(target, arg, payload), daemon=True,
                                          name="nb2prod-notify")
                thread.start()
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def wait(self, timeout: float = COMMAND_TIMEOUT_S + 5) -> None:
        for thread in self._threads:
            thread.join(timeout)


def _safe(target, arg: str, payload: dict[str, Any]) -> None:
    try:
        target(arg, payload)
    except Exception as exc:  # noqa: BLE001 - a failing notifier is logged, never raised
        log.warning("schedule %s: notify via %s failed: %s", payload.get("schedule"), arg, exc)
