"""The schedules API behind the CLI and the server: add, list, show, pause, resume, remove, run now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from nb2prod.core.builder import build_spec
from nb2prod.core.params import infer_value, validate_parameters
from nb2prod.errors import UsageError
from nb2prod.runner.options import RunOptions
from nb2prod.scheduling import timing
from nb2prod.scheduling.models import FireAttemptRow, FireRow, ScheduleRow
from nb2prod.scheduling.service import utcnow
from nb2prod.store.db import session

CATCHUP = ("skip", "latest", "all")
MODES = ("pipeline", "notebook")


def add(name: str, notebook: str, cron: str, *, tz: str = "UTC", parameters: dict[str, Any] | None = None,
        mode: str = "pipeline", options: dict[str, Any] | None = None, catchup: str = "skip", catchup_max: int = 100,
        max_concurrent: int = 1, timeout_s: float | None = None, retries: int = 0, retry_backoff_s: float = 30.0,
        notify_url: str | None = None, notify_command: str | None = None, notify_on_success: bool = False,
        now=None) -> dict[str, Any]:
    """Validate everything, then store the schedule; a bad input stores nothing."""
    path = Path(notebook).resolve()
    timing.check_cron(cron, tz)
    if mode not in MODES or catchup not in CATCHUP:
        raise UsageError(f"mode must be one of {MODES}, catch-up one of {CATCHUP}")
    if max_concurrent < 1 or retries < 0:
        raise UsageError("max concurrent must be >= 1 and retries >= 0")
    parameters = parameters or {}
    RunOptions.from_dict({**(options or {}), "parameters": {}})
    spec = build_spec(path)  # NotebookError when missing / not a notebook
    if mode == "pipeline" and spec.errors:
        raise UsageError(f"{path.name} is not a valid pipeline: {spec.errors[0]}")
    for value in parameters.values():
        timing.check_template(value)
    sample = {k: infer_value(v) if isinstance(v, str) else v
              for k, v in ((k, timing.render(v, utcnow(), tz)) for k, v in parameters.items())}
    validate_parameters(spec, sample)
    created = now or utcnow()
    row = ScheduleRow(name=name, notebook=str(path), cron=cron, timezone=tz, mode=mode, parameters=parameters,
                      options=options or {}, catchup=catchup, catchup_max=catchup_max, max_concurrent=max_concurrent,
                      timeout_s=timeout_s, retries=retries, retry_backoff_s=retry_backoff_s, notify_url=notify_url,
                      notify_command=notify_command, notify_on_success=notify_on_success, created_at=created,
                      considered_until=created, next_fire_at=timing.next_fire(cron, tz, created))
    with session() as s, s.begin():
        if s.scalar(select(ScheduleRow.id).where(ScheduleRow.name == name)):
            raise UsageError(f"a schedule named {name!r} already exists")
        s.add(row)
    return show(name)


def _get(s, name: str) -> ScheduleRow:
    row = s.scalar(select(ScheduleRow).where(ScheduleRow.name == name))
    if row is None:
        raise UsageError(f"no schedule named {name!r}")
    return row


def list_all() -> list[dict[str, Any]]:
    """Every schedule with its next fire time and last status."""
    with session() as s:
        names = s.scalars(select(ScheduleRow.name).order_by(ScheduleRow.name)).all()
    return [show(n, history=1) for n in names]


def show(name: str, history: int = 50) -> dict[str, Any]:
    """A schedule, its next fire time and its most recent fires (the audit log), newest first."""
    with session() as s:
        row = _get(s, name)
        fires = s.scalars(select(FireRow).where(FireRow.schedule_id == row.id)
                          .order_by(FireRow.scheduled_time.desc()).limit(history)).all()
        attempts = s.scalars(select(FireAttemptRow).where(FireAttemptRow.fire_id.in_([f.id for f in fires]))).all()
    upcoming = timing.fire_times(row.cron, row.timezone, max(row.considered_until, utcnow()),
                                 utcnow().replace(year=utcnow().year + 2), limit=3)
    return {
        "name": row.name, "notebook": row.notebook, "cron": row.cron, "timezone": row.timezone, "mode": row.mode,
        "parameters": row.parameters, "options": row.options, "catchup": row.catchup,
        "max_concurrent": row.max_concurrent, "timeout_s": row.timeout_s, "retries": row.retries,
        "notify_url": row.notify_url, "paused": row.paused,
        "next_fire_times": [t.isoformat() + "Z" for t in upcoming],
        "last_status": fires[0].status if fires else None,
        "fires": [{"scheduled_time": f.scheduled_time.isoformat() + "Z", "status": f.status, "reason": f.reason,
                   "attempts": f.attempts, "run_id": f.run_id, "mlflow_run_id": f.mlflow_run_id,
                   "started_at": f.started_at and f.started_at.isoformat() + "Z",
                   "ended_at": f.ended_at and f.ended_at.isoformat() + "Z", "error": f.error,
                   "notebook_sha256": f.notebook_sha256, "parameters": f.parameters,
                   "attempt_log": [{"attempt": a.attempt, "status": a.status, "run_id": a.run_id, "error": a.error}
                                   for a in sorted(attempts, key=lambda a: a.attempt) if a.fire_id == f.id]}
                  for f in fires],
    }


def set_paused(name: str, paused: bool) -> None:
    """Pause or resume; resuming does not fire the times passed while paused (they are skipped)."""
    with session() as s, s.begin():
        row = _get(s, name)
        values: dict[str, Any] = {"paused": paused}
        if not paused:
            values["considered_until"] = since = max(row.considered_until, utcnow())
            values["next_fire_at"] = timing.next_fire(row.cron, row.timezone, since)
        s.execute(update(ScheduleRow).where(ScheduleRow.id == row.id).values(**values))


def remove(name: str) -> None:
    with session() as s, s.begin():
        row = _get(s, name)
        fire_ids = s.scalars(select(FireRow.id).where(FireRow.schedule_id == row.id)).all()
        s.execute(delete(FireAttemptRow).where(FireAttemptRow.fire_id.in_(fire_ids)))
        s.execute(delete(FireRow).where(FireRow.schedule_id == row.id))
        s.execute(delete(ScheduleRow).where(ScheduleRow.id == row.id))


def run_now(name: str) -> dict[str, Any]:
    """Fire the schedule now (a fire record at the current minute, claimed like any other)."""
    from nb2prod.scheduling.service import Scheduler

    with session() as s:
        row = _get(s, name)
    scheduler = Scheduler()
    now = utcnow().replace(microsecond=0)
    scheduler._start(row, now, now)
    return show(name, history=1)["fires"][0]
