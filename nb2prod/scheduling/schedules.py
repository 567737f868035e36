"""The schedules API behind the CLI and the server: add, list, show, pause, resume, remove, run now, and
which schedulers are alive."""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from nb2prod import secret
from nb2prod.contracts import RunOptions
from nb2prod.contracts.options import SCHEDULE, fields_for
from nb2prod.core.builder import build_spec, real_path
from nb2prod.core.params import validate_parameters
from nb2prod.errors import NotebookError, ScheduleNotFound, UsageError, ValidationError
from nb2prod.runner.launch import typed_values
from nb2prod.scheduling import timing
from nb2prod.scheduling.models import FireAttemptRow, FireRow, ScheduleRow
from nb2prod.scheduling.service import alive_schedulers, last_scheduler_seen, utcnow
from nb2prod.store.db import session

NO_SCHEDULER = ("no scheduler is running on this store, and schedules fire only while one runs: keep "
                "`nb2prod scheduler` running, run `nb2prod scheduler --once` from a system timer, or start Jupyter "
                "with --Nb2ProdServer.run_scheduler=True")
CATCHUP = ("skip", "latest", "all")
MODES = ("pipeline", "notebook")
# The one schedule-name rule (CLI, API, REST): URL- and shell-safe. Rows named before it stay usable.
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Bounds that keep every stored number usable by the scheduler and the database.
INT_LIMITS = {"catchup_max": (1, 100_000), "max_concurrent": (1, 1_000), "retries": (0, 100)}
PREVIEW_MAX, HISTORY_MAX = 50, 500  # fire times a preview shows, fires a schedule's history shows
SECONDS_LIMITS = {"timeout_s": (0, 366 * 86400), "retry_backoff_s": (0, 86400)}


def add(name: str, notebook: str, cron: str, *, tz: str = "UTC", parameters: dict[str, Any] | None = None,
        mode: str = "pipeline", options: dict[str, Any] | None = None, catchup: str = "skip", catchup_max: int = 100,
        max_concurrent: int = 1, timeout_s: float | None = None, retries: int = 0, retry_backoff_s: float = 30.0,
        notify_url: str | None = None, notify_command: str | None = None, notify_on_success: bool = False,
        now=None) -> dict[str, Any]:
    """Validate everything, then store the schedule; a bad input stores nothing (UsageError / NotebookError)."""
    _check_fields(name=name, notebook=notebook, tz=tz, parameters=parameters, mode=mode, options=options,
                  catchup=catchup, catchup_max=catchup_max, max_concurrent=max_concurrent, timeout_s=timeout_s,
                  retries=retries, retry_backoff_s=retry_backoff_s, notify_url=notify_url,
                  notify_command=notify_command, notify_on_success=notify_on_success)
    path = real_path(notebook)
    timing.check_cron(cron, tz)
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}")
    if catchup not in CATCHUP:
        raise UsageError(f"catch-up must be one of {', '.join(CATCHUP)}")
    if notify_url and not notify_url.startswith(("http://", "https://")):
        raise UsageError(f"notify URL {notify_url!r} must be http:// or https://")
    parameters, options = parameters or {}, options or {}
    if "parameters" in options:
        raise UsageError("give parameters with -p/parameters=, not inside the run options")
    unfit = sorted(set(options) & set(RunOptions().to_dict()) - {f.name for f in fields_for(SCHEDULE)})
    if unfit:
        raise UsageError(f"run option(s) {', '.join(unfit)} cannot be part of a schedule (each fire is a new run)")
    secrets = options.get("secrets") or []
    if not isinstance(secrets, list) or not all(isinstance(e, str) for e in secrets):
        raise UsageError("run option 'secrets' must be a list of strings")
    given = sorted(set(secret.references(secrets)) & set(parameters))
    if given:
        raise UsageError(f"a schedule stores no secret values: give secret parameter {given[0]!r} as --secret "
                         f"{given[0]}=ENV_VAR (secrets: [\"{given[0]}=ENV_VAR\"]); each fire reads ENV_VAR from the "
                         "scheduler's environment")
    for value in parameters.values():
        timing.check_template(value)
    try:
        sample = typed_values(str(path), {k: timing.render(v, utcnow(), tz) for k, v in parameters.items()})
    except NotebookError as exc:
        raise UsageError(exc.message) from None
    # the environment a secret is read from is the scheduler's at each fire, not ours now: check names only
    run_options = RunOptions.from_dict({**options, "parameters": sample, "secrets": secret.names(secrets)})
    if mode == "pipeline":  # the checks `nb2prod run` makes: spec, stages, parameter names and types, secrets
        from nb2prod.runner.launch import prepare

        check = lambda: prepare(path, run_options)  # noqa: E731
    else:
        check = lambda: _check_notebook_mode(path, sample, run_options)  # noqa: E731
    try:
        check()
    except (ValidationError, NotebookError) as exc:  # missing / not a notebook / not a pipeline: bad input
        raise UsageError(exc.message) from None
    created = now or utcnow()
    row = ScheduleRow(name=name, notebook=str(path), cron=cron, timezone=tz, mode=mode, parameters=parameters,
                      options=options, catchup=catchup, catchup_max=catchup_max, max_concurrent=max_concurrent,
                      timeout_s=timeout_s, retries=retries, retry_backoff_s=retry_backoff_s, notify_url=notify_url,
                      notify_command=notify_command, notify_on_success=notify_on_success, created_at=created,
                      considered_until=created, next_fire_at=timing.next_fire(cron, tz, created))
    try:
        with session() as s, s.begin():
            s.add(row)
    except IntegrityError:
        raise UsageError(f"a schedule named {name!r} already exists") from None
    return show(name)


def _check_notebook_mode(path: Path, sample: dict[str, Any], options: RunOptions) -> None:
    from nb2prod.runner.launch import check_output_notebook

    spec = build_spec(path)
    validate_parameters(spec, sample)
    unknown = [n for n in options.secrets if n not in spec.parameters]
    if unknown:
        raise UsageError(f"--secret names unknown parameter(s): {', '.join(unknown)}")
    if options.output_notebook:
        check_output_notebook(options.output_notebook, {path})


def check_name(name: object) -> str:
    """The schedule-name rule; a UsageError naming it otherwise."""
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
        raise UsageError(f"schedule name {name!r}: use 1-128 letters, digits, '_', '-' and '.', starting with a "
                         "letter or digit")
    return name


def _check_fields(**fields: Any) -> None:
    """Types and bounds of add()'s arguments (REST bodies reach add() as decoded JSON)."""
    check_name(fields["name"])
    kinds = {"notebook": (str,), "tz": (str,), "mode": (str,), "catchup": (str,), "parameters": (dict, type(None)),
             "options": (dict, type(None)), "notify_url": (str, type(None)), "notify_command": (str, type(None)),
             "notify_on_success": (bool,), **dict.fromkeys(INT_LIMITS, (int,)),
             **dict.fromkeys(SECONDS_LIMITS, (int, float, type(None)))}
    for field, allowed in kinds.items():
        value = fields[field]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            wanted = " or ".join("null" if k is type(None) else {"str": "a string", "dict": "an object", "bool":
                                 "true or false", "int": "an integer", "float": "a number"}[k.__name__]
                                 for k in allowed)
            raise UsageError(f"{field!r} must be {wanted}, got {type(value).__name__}")
    for field, (low, high) in INT_LIMITS.items():
        if not low <= fields[field] <= high:
            raise UsageError(f"{field!r} must be from {low} to {high}, got {fields[field]}")
    for field, (low, high) in SECONDS_LIMITS.items():
        value = fields[field]
        if value is not None and not (math.isfinite(value) and low <= value <= high
                                      and (value > 0 or field != "timeout_s")):
            raise UsageError(f"{field!r} must be a number of seconds from {low} to {high}"
                             + (" (above 0)" if field == "timeout_s" else "") + f", got {value}")


def preview(cron: str, tz: str = "UTC", count: int = 5) -> dict[str, Any]:
    """The next ``count`` (1 to PREVIEW_MAX) fire times of a cron expression (for a UI's preview); UsageError
    when invalid."""
    _check_count("count", count, PREVIEW_MAX)
    timing.check_cron(cron, tz)
    return {"cron": cron, "timezone": tz, **_when(cron, tz, utcnow(), count)}


def _when(cron: str, tz: str, after: datetime, count: int) -> dict[str, Any]:
    """The expression in words and its next ``count`` fire times after ``after``, in UTC and in ``tz``."""
    times = timing.next_fire_times(cron, tz, after, count)
    return {"description": timing.describe(cron), "next_fire_times": [t.isoformat() + "Z" for t in times],
            "next_fire_times_local": [timing.local(t, tz).isoformat() for t in times]}


def _hidden(parameters: dict[str, Any] | None, options: dict[str, Any]) -> dict[str, Any] | None:
    """Parameters as shown: secret values (rows stored before secrets were references) masked."""
    secrets = options.get("secrets") if isinstance(options, dict) else None
    return secret.stored_parameters(parameters, secrets) if parameters and isinstance(secrets, list) else parameters


def _when_or_problem(row: ScheduleRow, count: int) -> dict[str, Any]:
    """``_when`` of a stored row; a row stored before today's checks (an ``R`` field, a zone since removed) gets a
    ``problem`` instead of breaking every list it is in."""
    try:
        timing.check_cron(row.cron, row.timezone)
        return {**_when(row.cron, row.timezone, max(row.considered_until, utcnow()), count), "problem": None}
    except Exception as exc:  # noqa: BLE001 - shown on the row; the row stays listable and removable
        reason = exc.message if isinstance(exc, UsageError) else "its cron expression cannot be read"
        return {"description": None, "next_fire_times": [], "next_fire_times_local": [],
                "problem": f"{reason}; remove this schedule and add it again"}


def _check_count(name: str, value: object, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise UsageError(f"{name} must be an integer from 1 to {high}, got {value!r}")


def _get(s, name: str) -> ScheduleRow:
    row = s.scalar(select(ScheduleRow).where(ScheduleRow.name == name))
    if row is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return row


def list_all() -> list[dict[str, Any]]:
    """Every schedule with its next fire time and last status."""
    with session() as s:
        names = s.scalars(select(ScheduleRow.name).order_by(ScheduleRow.name)).all()
    return [show(n, history=1) for n in names]


def show(name: str, history: int = 50) -> dict[str, Any]:
    """A schedule, its next fire time and its ``history`` (1 to HISTORY_MAX) most recent fires (the audit log),
    newest first."""
    _check_count("history", history, HISTORY_MAX)
    with session() as s:
        row = _get(s, name)
        fires = s.scalars(select(FireRow).where(FireRow.schedule_id == row.id)
                          .order_by(FireRow.scheduled_time.desc()).limit(history)).all()
        attempts = s.scalars(select(FireAttemptRow).where(FireAttemptRow.fire_id.in_([f.id for f in fires]))).all()
    return {
        "name": row.name, "notebook": row.notebook, "cron": row.cron, "timezone": row.timezone, "mode": row.mode,
        "parameters": _hidden(row.parameters, row.options), "options": row.options, "catchup": row.catchup,
        "max_concurrent": row.max_concurrent, "timeout_s": row.timeout_s, "retries": row.retries,
        "notify_url": row.notify_url, "paused": row.paused,
        **_when_or_problem(row, 3),
        "last_status": fires[0].status if fires else None,
        "fires": [{"scheduled_time": f.scheduled_time.isoformat() + "Z", "status": f.status, "reason": f.reason,
                   "attempts": f.attempts, "run_id": f.run_id, "mlflow_run_id": f.mlflow_run_id,
                   "started_at": f.started_at and f.started_at.isoformat() + "Z",
                   "ended_at": f.ended_at and f.ended_at.isoformat() + "Z", "error": f.error,
                   "notebook_sha256": f.notebook_sha256, "parameters": _hidden(f.parameters, row.options),
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
        if s.execute(delete(ScheduleRow).where(ScheduleRow.id == row.id)).rowcount == 0:
            raise ScheduleNotFound(f"no schedule named {name!r}")  # another client removed it meanwhile


def run_now(name: str) -> dict[str, Any]:
    """Fire the schedule now: a fire record at the current second, claimed and launched like any other (max
    concurrent applies), then handed over to whichever scheduler ticks next, which watches it to its end."""
    from nb2prod.scheduling.service import Scheduler

    with session() as s:
        row = _get(s, name)
    scheduler = Scheduler()
    now = utcnow().replace(microsecond=0)
    scheduler._start_on_time(row, now, now)
    with session() as s, s.begin():  # hand the fire to the running schedulers: the next tick adopts it
        s.execute(update(FireRow).where(FireRow.claimed_by == scheduler.id).values(claimed_by=None, lease_until=now))
    return show(name, history=1)["fires"][0]


def schedulers() -> dict[str, Any]:
    """The live schedulers of this store, and a warning (else None) when there is none."""
    alive = alive_schedulers()
    if alive:
        return {"schedulers": alive, "warning": None}
    last = last_scheduler_seen()
    seen = f" (one last ran at {last:%Y-%m-%d %H:%M} UTC)" if last else ""
    return {"schedulers": [], "warning": NO_SCHEDULER + seen}
