"""The run-store API: runs, stage states and attempts, heartbeats, cancel requests.

Written by the runner, read by every front end. A ``running`` run whose runner stopped
heartbeating (or whose process on this host is gone) is turned into ``interrupted`` on read.

Every state transition is a compare-and-set: an ``UPDATE … WHERE status = <the expected prior state>`` whose
row count says whether it won. A run leaves ``running`` once (finished by its runner *or* interrupted by the
reaper, never both); a finished stage never changes again; a cancel reaches only a running run. Several
processes (CLIs, Jupyter servers, schedulers, on several hosts when the store is PostgreSQL) may race for the
same row: the loser is told (``False``) and leaves the row alone.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from sqlalchemy import Connection, Row, func, insert, or_, select, update

from nb2prod.core.status import RunStatus, StageStatus
from nb2prod.errors import Nb2ProdError, RunNotFound
from nb2prod.store.db import engine
from nb2prod.store.models import attempts_table, checks_table, runs_table, stages_table

HEARTBEAT_S = 2.0
STALE_AFTER_S = 20.0


def now() -> datetime:
    """Naive UTC now (what the database stores)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _clock():
    """Heartbeat time as SQL: a server store's own clock (naive UTC), so hosts whose clocks differ judge each
    other's heartbeats by one clock; SQLite is one machine's file and uses its clock."""
    if engine().dialect.name == "postgresql":
        return func.timezone("UTC", func.now())
    return now()


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def create_run(run_id: str, notebook: str, stages: dict[str, str | None], *, notebook_sha256: str | None = None,
               parameters: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
               origin: str = "cli", resumed_from: str | None = None) -> None:
    """Record a new ``running`` run with all its stages (``{name: cache key}``) ``pending``."""
    t = now()
    with engine().begin() as c:
        c.execute(insert(runs_table).values(
            id=run_id, notebook=notebook, notebook_sha256=notebook_sha256, status=RunStatus.RUNNING.value,
            origin=origin, created_at=t, started_at=t, heartbeat_at=_clock(), pid=os.getpid(),
            host=socket.gethostname(), parameters=parameters or {}, options=options or {}, resumed_from=resumed_from))
        if stages:
            c.execute(insert(stages_table), [{"run_id": run_id, "name": name, "position": i, "cache_key": key,
                                          "status": StageStatus.PENDING.value}
                                         for i, (name, key) in enumerate(stages.items())])


_batch = threading.local()


@contextmanager
def batch() -> Iterator[None]:
    """Make this thread's :func:`update_run`, :func:`update_stage` and :func:`add_attempt` calls inside the block
    one transaction (the driver mirrors each poll's events at once: one commit instead of ~4 per stage)."""
    with engine().begin() as c:
        _batch.connection = c
        try:
            yield
        finally:
            _batch.connection = None


@contextmanager
def _writing() -> Iterator[Connection]:
    """The connection of the enclosing :func:`batch`, else a transaction of its own."""
    current = getattr(_batch, "connection", None)
    if current is not None:
        yield current
        return
    with engine().begin() as c:
        yield c


RUNNING = RunStatus.RUNNING.value
UNFINISHED_STAGE = (StageStatus.PENDING.value, StageStatus.RUNNING.value)
_TRANSITIONS = {"status", "ended_at", "cancel_requested"}  # changed only by the compare-and-set functions


def update_run(run_id: str, **fields: Any) -> None:
    """Record facts about a run (MLflow ids, tracking URI); its status changes only through the transitions."""
    if _TRANSITIONS & fields.keys():
        raise ValueError(f"{sorted(_TRANSITIONS & fields.keys())} change only through a store transition")
    with _writing() as c:
        c.execute(update(runs_table).where(runs_table.c.id == run_id).values(**fields))


def attach_runner(run_id: str, pid: int) -> None:
    """Record the process that runs ``run_id``; refused (Nb2ProdError) once the run has ended (cancelled,
    interrupted) before this runner took it over."""
    with engine().begin() as c:
        if c.execute(update(runs_table).where(runs_table.c.id == run_id, runs_table.c.status == RUNNING)
                     .values(pid=pid, host=socket.gethostname(), heartbeat_at=_clock())).rowcount != 1:
            status = c.scalar(select(runs_table.c.status).where(runs_table.c.id == run_id))
            raise Nb2ProdError(f"run {run_id} is {status or 'gone'}; it is not run again")


def heartbeat(run_id: str) -> bool:
    """Refresh a running run's heartbeat; True when its runner should stop: a cancel was requested, or the
    run is no longer ``running`` (the reaper judged the runner dead)."""
    with engine().begin() as c:
        beat = c.execute(update(runs_table).where(runs_table.c.id == run_id, runs_table.c.status == RUNNING)
                         .values(heartbeat_at=_clock())).rowcount
        return not beat or bool(c.scalar(select(runs_table.c.cancel_requested).where(runs_table.c.id == run_id)))


def update_stage(run_id: str, name: str, **fields: Any) -> bool:
    """Update a stage; a status change applies only while the stage is unfinished (pending/running), so a
    stage the reaper or the run's end closed is never reopened by a late event. False when refused."""
    query = update(stages_table).where(stages_table.c.run_id == run_id, stages_table.c.name == name)
    if "status" in fields:
        query = query.where(stages_table.c.status.in_(UNFINISHED_STAGE))
    with _writing() as c:
        return c.execute(query.values(**fields)).rowcount == 1


def set_cache_keys(run_id: str, keys: dict[str, str]) -> None:
    with engine().begin() as c:
        for name, key in keys.items():
            c.execute(update(stages_table).where(stages_table.c.run_id == run_id, stages_table.c.name == name)
                      .values(cache_key=key))


def add_attempt(run_id: str, stage: str, attempt: int, status: str, **fields: Any) -> None:
    with _writing() as c:
        c.execute(insert(attempts_table).values(run_id=run_id, stage=stage, attempt=attempt, status=status, **fields))


def finish_run(run_id: str, status: RunStatus, error: dict[str, Any] | None = None,
               ended_at: datetime | None = None) -> bool:
    """``running`` → ``status``, ended now or at ``ended_at`` (naive UTC: a run that ended elsewhere, seen
    later); stages still pending/running become skipped/cancelled. False (and nothing written) when the run had
    already ended, e.g. the reaper marked it ``interrupted`` first."""
    t = now()
    with engine().begin() as c:
        won = c.execute(update(runs_table).where(runs_table.c.id == run_id, runs_table.c.status == RUNNING)
                        .values(status=status.value, ended_at=ended_at or t, heartbeat_at=t, error=error)).rowcount == 1
        if won:
            _close_stages(c, [run_id])
        return won


def set_checks(run_id: str, gate: dict[str, Any] | None, promotion: dict[str, Any] | None,
               drift: dict[str, Any] | None) -> None:
    """Record the run's gate, promotion and drift outcome (its runner's alone: one writer per run)."""
    checks = {"gate": gate, "promotion": promotion, "drift": drift}
    with engine().begin() as c:
        if not c.execute(update(checks_table).where(checks_table.c.run_id == run_id).values(**checks)).rowcount:
            c.execute(insert(checks_table).values(run_id=run_id, **checks))


def _close_stages(c: Connection, run_ids: list[str]) -> None:
    of_runs = stages_table.c.run_id.in_(run_ids)
    c.execute(update(stages_table).where(of_runs, stages_table.c.status == StageStatus.RUNNING.value)
              .values(status=StageStatus.CANCELLED.value))
    c.execute(update(stages_table).where(of_runs, stages_table.c.status == StageStatus.PENDING.value)
              .values(status=StageStatus.SKIPPED.value))


def request_cancel(run_id: str) -> bool:
    """Ask a running run's runner to stop (it sees the request on its next heartbeat); False when the run
    has already ended."""
    with engine().begin() as c:
        return c.execute(update(runs_table).where(runs_table.c.id == run_id, runs_table.c.status == RUNNING)
                         .values(cancel_requested=True)).rowcount == 1


def resolve_run_id(run_id: str) -> str:
    """The nb2prod run id for an nb2prod id, an MLflow parent run id, or a unique prefix of either."""
    with engine().connect() as c:
        found = c.scalars(select(runs_table.c.id).where(or_(runs_table.c.id == run_id,
                                                            runs_table.c.mlflow_run_id == run_id))).all()
        if not found and len(run_id) >= 4:  # a prefix, literally: `_` and `%` match only themselves
            prefix = or_(runs_table.c.id.startswith(run_id, autoescape=True),
                         runs_table.c.mlflow_run_id.startswith(run_id, autoescape=True))
            found = c.scalars(select(runs_table.c.id).where(prefix)).all()
    if len(found) != 1:
        raise RunNotFound(f"no run {run_id!r}" if not found else f"run id prefix {run_id!r} is ambiguous")
    return found[0]


def reap_interrupted() -> list[dict[str, Any]]:
    """Turn running runs whose runner died into ``interrupted``; return those whose MLflow run is still open.

    Each is a compare-and-set on what was judged: still ``running``, and still the same dead pid (this host)
    or still silent (elsewhere); a run that finished or heartbeat in between is left as it is."""
    silent = runs_table.c.heartbeat_at < _clock() - timedelta(seconds=STALE_AFTER_S)
    host = socket.gethostname()
    with engine().connect() as c:
        running = c.execute(select(runs_table.c.id, runs_table.c.pid, runs_table.c.host, runs_table.c.heartbeat_at,
                                   runs_table.c.options, silent.label("silent"))
                            .where(runs_table.c.status == RUNNING)).all()
    for r in running:
        if _is_job(r.options):
            continue  # a detached run on a Ray cluster: its job's status is its liveness (nb2prod.runner.detached)
        if r.host == host and r.pid:  # on this host the runner's pid decides; elsewhere its heartbeat does
            if not _alive(r.pid):
                _interrupt(r.id, runs_table.c.pid == r.pid, r.heartbeat_at)
        elif r.silent:
            _interrupt(r.id, silent, r.heartbeat_at)
    with engine().connect() as c:
        unclosed = c.execute(select(runs_table.c.id, runs_table.c.mlflow_run_id, runs_table.c.tracking_uri)
                             .where(runs_table.c.status == RunStatus.INTERRUPTED.value,
                                    runs_table.c.mlflow_closed.is_(False),
                                    runs_table.c.mlflow_run_id.is_not(None))).all()
    return [{"id": r.id, "mlflow_run_id": r.mlflow_run_id, "tracking_uri": r.tracking_uri} for r in unclosed]


def _interrupt(run_id: str, still_dead, ended_at: datetime | None) -> bool:
    """``running`` → ``interrupted`` if ``still_dead`` holds at write time; closes its stages."""
    error = {"type": "Interrupted", "message": "the runner process stopped without finishing the run; "
                                               f"resume it with `nb2prod resume {run_id}`"}
    with engine().begin() as c:
        won = c.execute(update(runs_table).where(runs_table.c.id == run_id, runs_table.c.status == RUNNING, still_dead)
                        .values(status=RunStatus.INTERRUPTED.value, ended_at=ended_at, error=error)).rowcount == 1
        if won:
            _close_stages(c, [run_id])
        return won


def _is_job(options: dict[str, Any] | None) -> bool:
    """A detached run on a Ray cluster (submitted to a Jobs API address): its job's status is its liveness."""
    return str((options or {}).get("ray_address") or "").startswith(("http://", "https://"))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def get_run(run_id: str) -> dict[str, Any]:
    """The run record (see ARCHITECTURE.md) for an nb2prod or MLflow run id."""
    reap_interrupted()
    run_id = resolve_run_id(run_id)
    with engine().connect() as c:
        run = c.execute(select(runs_table).where(runs_table.c.id == run_id)).one()
        stages = c.execute(select(stages_table).where(stages_table.c.run_id == run_id)
                           .order_by(stages_table.c.position)).all()
        checks = c.execute(select(checks_table).where(checks_table.c.run_id == run_id)).one_or_none()
        return _record(run, stages, checks)


def list_runs(notebook: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Most recent runs first, optionally of one notebook (absolute path)."""
    reap_interrupted()
    with engine().connect() as c:
        query = select(runs_table).order_by(runs_table.c.created_at.desc()).limit(limit)
        if notebook:
            query = query.where(runs_table.c.notebook == notebook)
        runs = c.execute(query).all()
        ids = [r.id for r in runs]
        by_run: dict[str, list[Row]] = {}
        for st in c.execute(select(stages_table).where(stages_table.c.run_id.in_(ids))
                            .order_by(stages_table.c.position)):
            by_run.setdefault(st.run_id, []).append(st)
        checks = {ch.run_id: ch for ch in c.execute(select(checks_table).where(checks_table.c.run_id.in_(ids)))}
        return [_record(r, by_run.get(r.id, []), checks.get(r.id)) for r in runs]


def attempts(run_id: str) -> list[dict[str, Any]]:
    with engine().connect() as c:
        rows = c.execute(select(attempts_table).where(attempts_table.c.run_id == run_id)
                         .order_by(attempts_table.c.id)).all()
        return [{"stage": a.stage, "attempt": a.attempt, "status": a.status, "node": a.node, "error": a.error,
                 "started_at": _iso(a.started_at), "ended_at": _iso(a.ended_at)} for a in rows]


def runner_pid(run_id: str) -> int | None:
    """The pid of the process that last took run ``run_id`` over (on the host the run names), if any."""
    with engine().connect() as c:
        return c.scalar(select(runs_table.c.pid).where(runs_table.c.id == run_id))


def _iso(t: datetime | None) -> str | None:
    return t.replace(tzinfo=timezone.utc).isoformat() if t else None


def _record(run: Row, stages: list[Row], checks: Row | None = None) -> dict[str, Any]:
    end = run.ended_at or now()
    gate = checks.gate if checks and checks.gate else {"status": "none", "reason": None}
    return {
        "id": run.id, "notebook": run.notebook, "status": run.status, "origin": run.origin,
        "created_at": _iso(run.created_at), "started_at": _iso(run.started_at), "ended_at": _iso(run.ended_at),
        "duration_s": round((end - run.started_at).total_seconds(), 3) if run.started_at else None,
        "parameters": run.parameters, "options": run.options, "mlflow_run_id": run.mlflow_run_id,
        "mlflow_experiment_id": run.mlflow_experiment_id, "tracking_uri": run.tracking_uri,
        "error": run.error, "resumed_from": run.resumed_from, "notebook_sha256": run.notebook_sha256,
        "gate": {"status": gate["status"], "reason": gate.get("reason")}, "gates": gate.get("results", []),
        "promotion": checks.promotion if checks else None, "drift": checks.drift if checks else None,
        "stages": {st.name: {
            "status": st.status, "started_at": _iso(st.started_at), "ended_at": _iso(st.ended_at),
            "duration_s": st.duration_s, "attempts": st.attempts, "system_retries": st.system_retries,
            "cached": st.status == StageStatus.CACHED.value, "cached_from": st.cached_from,
            "mlflow_run_id": st.mlflow_run_id, "error": st.error, "cache_key": st.cache_key,
        } for st in stages},
    }
