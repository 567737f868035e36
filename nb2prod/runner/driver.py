"""Client side of a run: hand the request to the coordinator, mirror its events into the run
store and an observer (live views), heartbeat, and turn Ctrl-C / SIGTERM / ``nb2prod cancel``
into a cancel."""

from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from nb2prod.contracts import EventKind, RunEvent
from nb2prod.errors import Nb2ProdError
from nb2prod.store import runs as store

Observer = Callable[[RunEvent], None]
POLL_S = 0.05
KEEPALIVE_S = 5.0  # well under the coordinator's CLIENT_TIMEOUT_S


def drive(request, ray_address: str | None, observer: Observer | None = None) -> dict[str, Any]:
    """Run ``request`` (a RunRequest) on the cluster and return the coordinator's result."""
    from nb2prod.runner.cluster import connect

    from nb2prod.runner.keeper import warm_hint

    warm = warm_hint(request)  # for a cluster that comes up now
    address = connect(ray_address, warm)  # before importing ray: it sets the embedded env
    import ray

    from nb2prod.runner.cluster import is_embedded
    from nb2prod.runner.coordinator import get_coordinator
    from nb2prod.runner.relay import Replay, narrow, put_hits

    if request.ship:
        request.ship.upload()  # once per content: an unchanged directory is not sent again
    coordinator = get_coordinator(embedded=is_embedded(address), warm=warm)
    narrow(request, coordinator)
    if request.relay_cache:
        put_hits(request)
    replay = Replay(request.tracking_uri, request.cache_dir,
                    lambda token, outcome: coordinator.answer.remote(request.run_id, token, outcome))
    ref = coordinator.run.remote(request)
    following = threading.Event()
    threading.Thread(target=_keep_alive, args=(coordinator, request.run_id, following), daemon=True,
                     name="nb2prod-keepalive").start()
    try:
        with _signals_to_cancel() as interrupted:
            _follow(request, coordinator, ref, interrupted, observer, replay)
        result = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # raised inside the coordinator (its tracking store, say)
        cause = exc.cause if exc.cause is not None else exc
        reason = cause.message if isinstance(cause, Nb2ProdError) else f"{type(cause).__name__}: {cause}"
        raise Nb2ProdError(f"the run's coordinator failed: {reason.splitlines()[0] if reason else ''}; "
                           f"the run's state is in the run store: `nb2prod status {request.run_id}`") from None
    except ray.exceptions.RayError as exc:
        raise Nb2ProdError(f"the run's coordinator in the Ray cluster was lost ({type(exc).__name__}); "
                           f"the run's state is in the run store: `nb2prod status {request.run_id}`") from None
    finally:
        following.set()
    result["interrupted"] = interrupted.is_set()
    result["mlflow_run_id"], result["experiment_id"] = replay.real([result["mlflow_run_id"], result["experiment_id"]])
    return result


def _keep_alive(coordinator, run_id: str, stop: threading.Event) -> None:
    """Tell the coordinator that this client is alive while the loop of :func:`_follow` is busy: replaying
    relayed MLflow writes can outlast the coordinator's client timeout on a loaded machine."""
    while not stop.wait(KEEPALIVE_S):
        coordinator.touch.remote(run_id)


def _follow(request, coordinator, ref, interrupted: threading.Event, observer: Observer | None, replay) -> None:
    """Mirror the coordinator's events until the run ends (applying relayed MLflow writes and cache writes);
    heartbeat; forward a cancel once."""
    import ray

    cursor, last_beat, cancel_sent = 0, 0.0, False
    while True:
        done, _ = ray.wait([ref], timeout=POLL_S)
        events, cursor = ray.get(coordinator.poll.remote(request.run_id, cursor))
        mirrored = [replay.real(event) for event in events if not replay.handle(event)]
        if mirrored:
            with store.batch():  # one transaction per poll
                for event in mirrored:
                    record_event(request.run_id, event)
        for event in mirrored if observer else ():
            observer(event)
        if done:
            return
        now = time.time()
        if now - last_beat > store.HEARTBEAT_S:
            last_beat = now
            if store.heartbeat(request.run_id):
                interrupted.set()
        if interrupted.is_set() and not cancel_sent:
            coordinator.cancel.remote(request.run_id)
            cancel_sent = True


def record_event(run_id: str, event: RunEvent) -> None:
    """Mirror one event of run ``run_id`` into the run store."""
    kind = event.kind
    error = event.error.to_dict() if event.error else None
    if kind is EventKind.RUN:
        store.update_run(run_id, mlflow_run_id=event.mlflow_run_id, mlflow_experiment_id=event.experiment_id)
    elif kind is EventKind.STAGE_MLFLOW:
        store.update_stage(run_id, event.stage, mlflow_run_id=event.mlflow_run_id)
    elif kind is EventKind.QUEUED:
        store.update_stage(run_id, event.stage, status="pending", attempts=event.attempt)
    elif kind is EventKind.RUNNING:
        store.update_stage(run_id, event.stage, status="running", started_at=_dt(event.started_at),
                           system_retries=event.system_retries)
    elif kind is EventKind.RETRYING:
        store.add_attempt(run_id, event.stage, event.attempt, "failed", error=error)
        store.update_stage(run_id, event.stage, status="pending", error=error)
    elif kind is EventKind.STAGE:
        fields: dict[str, Any] = {"status": event.status, "error": error, "system_retries": event.system_retries}
        if event.duration_s is not None:
            fields["duration_s"] = event.duration_s
        if event.cached_from is not None:
            fields["cached_from"] = event.cached_from
        for key in ("started_at", "ended_at"):
            if getattr(event, key):
                fields[key] = _dt(getattr(event, key))
        if event.attempt:
            fields["attempts"] = event.attempt
            store.add_attempt(run_id, event.stage, event.attempt, event.status, error=error,
                              started_at=fields.get("started_at"), ended_at=fields.get("ended_at"))
        store.update_stage(run_id, event.stage, **fields)


def save_outputs(run_id: str, result: dict[str, Any], output_notebook: str | None) -> dict[str, str] | None:
    """Write the executed notebook, stage logs and the result under the run dir, then ``--output-notebook``;
    returns the error (``{type, message}``) when the output notebook could not be written, else None."""
    from nb2prod.home import run_dir, write_private

    directory = run_dir(run_id)
    write_private(directory / "output.ipynb", result["output_notebook"])
    for name, stage in result["stages"].items():
        if stage.get("log"):
            write_private(directory / "logs" / f"{name}.log", stage["log"])
    write_private(directory / "result.json",
                  json.dumps({k: v for k, v in result.items() if k != "output_notebook"}, default=str))
    if output_notebook:
        try:
            Path(output_notebook).write_text(result["output_notebook"])
        except OSError as exc:
            return {"type": "OutputNotebookError",
                    "message": f"the pipeline ran, but its executed notebook could not be written to "
                               f"{output_notebook}: {exc.strerror or exc}; it is kept at {directory / 'output.ipynb'}"}
    return None


@contextmanager
def _signals_to_cancel() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set an event (the loop then cancels) instead of killing the process."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: interrupted.set())
    try:
        yield interrupted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc).replace(tzinfo=None)
