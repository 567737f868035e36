"""Notify on a fire's outcome: a webhook (JSON POST) and/or a command. A failing notifier is logged, never raised."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.request

log = logging.getLogger("nb2prod.scheduler")


def send(schedule, fire) -> None:
    """Call the schedule's webhook and command with the fire's outcome."""
    body = {"schedule": schedule.name, "scheduled_time": fire.scheduled_time.isoformat() + "Z",
            "run_id": fire.run_id, "status": fire.status, "error": fire.error, "mlflow_run_id": fire.mlflow_run_id,
            "mlflow_link": _link(schedule, fire)}
    if schedule.notify_url:
        try:
            request = urllib.request.Request(schedule.notify_url, data=json.dumps(body).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=10).close()
        except Exception as exc:  # noqa: BLE001
            log.warning("schedule %s: webhook %s failed: %s", schedule.name, schedule.notify_url, exc)
    if schedule.notify_command:
        env = {**os.environ, **{f"NB2PROD_{k.upper()}": str(v) for k, v in body.items() if v is not None}}
        try:
            subprocess.run(schedule.notify_command, shell=True, env=env, timeout=60, check=False)
        except Exception as exc:  # noqa: BLE001
            log.warning("schedule %s: notify command failed: %s", schedule.name, exc)


def _link(schedule, fire) -> str | None:
    base = os.environ.get("NB2PROD_MLFLOW_UI_URL")
    return f"{base.rstrip('/')}/#/runs/{fire.mlflow_run_id}" if base and fire.mlflow_run_id else None
