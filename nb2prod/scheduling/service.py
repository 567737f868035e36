"""The scheduler: decide due fire times, claim each exactly once in the database, launch and watch runs.

Exactly once: a fire is a row with UNIQUE(schedule_id, scheduled_time); inserting it is the claim, so two
schedulers sharing a store cannot both fire a time. The claimer holds a lease (renewed by ``renew()``, which the
loops call from a heartbeat thread); a fire whose lease expired (its scheduler died) is taken over by the next
scheduler with one conditional UPDATE: a run still going is adopted, an ended one recorded, an interrupted one
retried if the schedule allows. Every state change of a fire is a compare-and-set (an UPDATE conditioned on the
state it was judged in, whose row count says who won): an attempt is started on the fire's attempt counter, its
run recorded only while the attempt is undecided, its end decided (retry or final, with the notification) once,
so two schedulers never launch, retry or notify the same attempt twice. The clock is injectable.

Fire statuses: ``queued`` (a catch-up fire waiting for a free slot) → ``running`` ⇄ ``retrying`` →
``done`` | ``failed`` | ``cancelled``; or ``skipped`` (with the reason) from the start.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from nb2prod.scheduling import notify, timing
from nb2prod.scheduling.models import FireAttemptRow, FireRow, ScheduleRow, SchedulerRow
from nb2prod.store.db import engine, session

log = logging.getLogger("nb2prod.scheduler")
LEASE_S = float(os.environ.get("NB2PROD_SCHEDULER_LEASE_S", 30))
GRACE_S = float(os.environ.get("NB2PROD_SCHEDULER_GRACE_S", 90))  # older than this when first seen = missed
ACTIVE = ("running", "retrying")  # a run of the schedule is going (counts against max concurrent)
OPEN = ("queued", *ACTIVE)  # the fire is not decided yet; its claimer holds a lease
MAX_BACKOFF_S = 86400.0  # exponential retry backoff stops growing at a day


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def last_scheduler_seen() -> datetime | None:
    """When any scheduler last beat (a ``--once`` run from a system timer leaves its row behind)."""
    with session() as s:
        return s.scalar(select(func.max(SchedulerRow.seen_at)))


def alive_schedulers(now: datetime | None = None) -> list[dict[str, Any]]:
    """The schedulers whose heartbeat is younger than a lease: those that will fire the store's schedules."""
    since = (now or utcnow()) - timedelta(seconds=LEASE_S)
    with session() as s:
        rows = s.scalars(select(SchedulerRow).where(SchedulerRow.seen_at >= since).order_by(SchedulerRow.started_at))
        return [{"id": r.id, "started_at": r.started_at.isoformat() + "Z", "seen_at": r.seen_at.isoformat() + "Z"}
                for r in rows]


class Scheduler:
    """One scheduler process (or thread inside a Jupyter server). ``tick()`` does one round of work."""

    def __init__(self, clock: Callable[[], datetime] = utcnow, launcher: Any = None,
                 grace_s: float | None = None) -> None:
        from nb2prod.scheduling.launch import Launcher

        self.clock = clock
        self.id = f"{socket.gethostname()[:48]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # fits String(64)
        self.launcher = launcher or Launcher()
        self.grace_s = GRACE_S if grace_s is None else grace_s
        self.notifier = notify.Notifier()

    def tick(self) -> int:
        """Fire what is due, watch what runs, start queued catch-up fires; returns how many runs were started."""
        now = self.clock()
        with session() as s:
            schedules = s.scalars(select(ScheduleRow).where(ScheduleRow.paused.is_(False),
                                                            ScheduleRow.next_fire_at <= now)).all()
        started = 0
        for schedule in schedules:
            try:
                started += self._fire_due(schedule, now)
            except Exception:  # noqa: BLE001 - one unreadable row (a legacy cron expression) never stops the others
                log.exception("schedule %s: cannot decide its fire times; `nb2prod schedule show` says why",
                              schedule.name)
        return started + self._watch(now)

    def renew(self) -> None:
        """The heartbeat: extend the lease of every open fire this scheduler holds, and say it is alive."""
        now = self.clock()
        with session() as s, s.begin():
            s.execute(update(FireRow).where(FireRow.claimed_by == self.id, FireRow.status.in_(OPEN))
                      .values(lease_until=now + timedelta(seconds=LEASE_S)))
            if not s.execute(update(SchedulerRow).where(SchedulerRow.id == self.id).values(seen_at=now)).rowcount:
                s.add(SchedulerRow(id=self.id, started_at=now, seen_at=now))
                s.execute(delete(SchedulerRow).where(SchedulerRow.seen_at < now - timedelta(days=1)))

    def retire(self) -> None:
        """Say this scheduler stopped (a killed one just stops beating and is no longer counted as alive)."""
        with session() as s, s.begin():
            s.execute(delete(SchedulerRow).where(SchedulerRow.id == self.id))

    def holds_open_fires(self) -> bool:
        with session() as s:
            return s.scalar(select(FireRow.id).where(FireRow.claimed_by == self.id,
                                                     FireRow.status.in_(OPEN)).limit(1)) is not None

    # --- deciding and claiming --------------------------------------------------------
    def _fire_due(self, schedule: ScheduleRow, now: datetime) -> int:
        due = timing.fire_times(schedule.cron, schedule.timezone, schedule.considered_until, now)
        if not due:
            return 0
        on_time = [t for t in due if (now - t).total_seconds() <= self.grace_s]
        missed = [t for t in due if t not in on_time]
        run, skip = plan_catchup(schedule.catchup, missed, schedule.catchup_max)
        with session() as s, s.begin():  # advance first: a crash from here on never re-decides these times
            s.execute(update(ScheduleRow).where(ScheduleRow.id == schedule.id,
                                                ScheduleRow.considered_until < due[-1])
                      .values(considered_until=due[-1],
                              next_fire_at=timing.next_fire(schedule.cron, schedule.timezone, due[-1])))
        self._claim_many(schedule, skip, "skipped", f"missed while no scheduler ran (catch-up={schedule.catchup})")
        self._claim_many(schedule, run, "queued", f"catch-up={schedule.catchup}")
        return sum(self._start_on_time(schedule, t, now) for t in on_time)

    def _claim(self, schedule: ScheduleRow, t: datetime, status: str, reason: str | None = None) -> FireRow | None:
        """Insert the fire record for (schedule, t): the atomic claim. None when another scheduler has it."""
        fire = FireRow(schedule_id=schedule.id, scheduled_time=t, status=status, reason=reason, claimed_by=self.id,
                       lease_until=self.clock() + timedelta(seconds=LEASE_S), attempts=0)
        try:
            with session() as s, s.begin():
                s.add(fire)
            return fire
        except IntegrityError:
            return None

    def _claim_many(self, schedule: ScheduleRow, times: list[datetime], status: str, reason: str) -> None:
        """Claim many fire times in one statement; times another scheduler holds are left to it."""
        if not times:
            return
        lease = self.clock() + timedelta(seconds=LEASE_S)
        rows = [{"schedule_id": schedule.id, "scheduled_time": t, "status": status, "reason": reason,
                 "claimed_by": self.id, "lease_until": lease, "attempts": 0} for t in times]
        dialect = engine().dialect.name
        if dialect in ("sqlite", "postgresql"):
            module = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["insert"])
            with session() as s, s.begin():
                for i in range(0, len(rows), 500):
                    s.execute(module.insert(FireRow).on_conflict_do_nothing(), rows[i:i + 500])
            return
        for t in times:  # other databases: one claim per row
            self._claim(schedule, t, status, reason)

    def _active(self, schedule_id: int) -> int:
        with session() as s:
            return s.scalar(select(func.count()).select_from(FireRow).where(FireRow.schedule_id == schedule_id,
                                                                             FireRow.status.in_(ACTIVE)))

    def _start_on_time(self, schedule: ScheduleRow, t: datetime, now: datetime) -> int:
        if self._active(schedule.id) >= schedule.max_concurrent:
            if self._claim(schedule, t, "skipped", f"max concurrent runs ({schedule.max_concurrent}) still going"):
                log.info("schedule %s: %s skipped, max concurrent runs still going", schedule.name, t)
            return 0
        fire = self._claim(schedule, t, "queued")
        return int(fire is not None and self._launch(schedule, fire.id, 0, now))

    def _launch(self, schedule: ScheduleRow, fire_id: int, attempts: int, now: datetime) -> bool:
        """Start attempt ``attempts + 1`` of a fire; False when another scheduler took this attempt."""
        attempt = attempts + 1
        with session() as s, s.begin():  # compare-and-set: exactly one scheduler starts this attempt
            won = s.execute(update(FireRow).where(FireRow.id == fire_id, FireRow.claimed_by == self.id,
                                                  FireRow.attempts == attempts, FireRow.status.in_(OPEN))
                            .values(status="running", attempts=attempt, run_id=None, next_attempt_at=None,
                                    started_at=func.coalesce(FireRow.started_at, now), ended_at=None)).rowcount
            if won != 1:
                return False
            fire = s.get(FireRow, fire_id)
            s.add(FireAttemptRow(fire_id=fire_id, attempt=attempt, status="running", started_at=now))
            scheduled = fire.scheduled_time
        params = {k: timing.render(v, scheduled, schedule.timezone) for k, v in schedule.parameters.items()}
        try:
            run_id, sha = self.launcher.launch(schedule, params)
            error = None
        except Exception as exc:  # noqa: BLE001 - a bad notebook fails this attempt, not the scheduler
            run_id, sha, error = None, None, f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
        with session() as s, s.begin():  # compare-and-set: the attempt is still ours to record (not yet decided)
            recorded = s.execute(update(FireRow).where(
                FireRow.id == fire_id, FireRow.attempts == attempt, FireRow.status == "running",
                FireRow.run_id.is_(None)).values(run_id=run_id, notebook_sha256=sha, parameters=params,
                                                  error=error)).rowcount == 1
            s.execute(update(FireAttemptRow).where(FireAttemptRow.fire_id == fire_id, FireAttemptRow.attempt == attempt)
                      .values(run_id=run_id))
        log.info("schedule %s: fired %s (attempt %d) -> %s", schedule.name, scheduled, attempt, run_id or error)
        if not recorded:  # a scheduler that took the fire over meanwhile decided this attempt: ours is extra
            log.warning("schedule %s: attempt %d of %s was decided by another scheduler while it started; "
                        "cancelling its run %s", schedule.name, attempt, scheduled, run_id)
            if run_id:
                self.launcher.cancel(run_id)
            return False
        if error:
            self._ended(schedule, fire_id, attempt, None, "failed", error, now)
        return run_id is not None

    # --- watching -----------------------------------------------------------------------
    def _watch(self, now: datetime) -> int:
        lease = now + timedelta(seconds=LEASE_S)
        with session() as s, s.begin():
            s.execute(update(FireRow).where(FireRow.claimed_by == self.id, FireRow.status.in_(OPEN))
                      .values(lease_until=lease))
            # adopt fires handed over by run-now, take over those whose scheduler died (lease expired); the
            # conditional UPDATE is the atomic claim
            handed = s.execute(update(FireRow).where(FireRow.status.in_(OPEN), FireRow.claimed_by.is_(None))
                               .values(claimed_by=self.id, lease_until=lease)).rowcount
            taken = s.execute(update(FireRow).where(FireRow.status.in_(OPEN), FireRow.lease_until < now)
                              .values(claimed_by=self.id, lease_until=lease)).rowcount
        if handed:
            log.info("watching %d fire(s) started by run-now", handed)
        if taken:
            log.info("took over %d fire(s) whose scheduler stopped heartbeating", taken)
        with session() as s:
            fires = s.scalars(select(FireRow).where(FireRow.claimed_by == self.id, FireRow.status.in_(OPEN))
                              .order_by(FireRow.scheduled_time)).all()
            schedules = {f.schedule_id: s.get(ScheduleRow, f.schedule_id) for f in fires}
            begun = dict(s.execute(select(FireAttemptRow.fire_id, func.max(FireAttemptRow.started_at))
                                   .where(FireAttemptRow.fire_id.in_([f.id for f in fires if f.status == "running"]))
                                   .group_by(FireAttemptRow.fire_id)).all())
        started = 0
        for fire in fires:
            schedule = schedules[fire.schedule_id]
            if fire.status == "running":
                self._check(schedule, fire, begun.get(fire.id) or fire.started_at, now)
            elif fire.status == "retrying" and fire.next_attempt_at and fire.next_attempt_at <= now:
                started += self._launch(schedule, fire.id, fire.attempts, now)
            elif fire.status == "queued" and self._active(schedule.id) < schedule.max_concurrent:
                started += self._launch(schedule, fire.id, fire.attempts, now)  # catch-up, oldest first
        return started

    def _check(self, schedule: ScheduleRow, fire: FireRow, attempt_start: datetime | None, now: datetime) -> None:
        if not fire.run_id:  # claimed by a scheduler that died before its run started
            self._ended(schedule, fire.id, fire.attempts, None, "interrupted", "the scheduler stopped before the "
                        "run started", now)
            return
        state = self.launcher.status(fire.run_id)
        if state.get("mlflow_run_id") and state["mlflow_run_id"] != fire.mlflow_run_id:
            with session() as s, s.begin():
                s.execute(update(FireRow).where(FireRow.id == fire.id, FireRow.run_id == fire.run_id)
                          .values(mlflow_run_id=state["mlflow_run_id"]))
        if state["status"] == "running":
            if schedule.timeout_s and attempt_start and (now - attempt_start).total_seconds() > schedule.timeout_s:
                self.launcher.cancel(fire.run_id)
                self._ended(schedule, fire.id, fire.attempts, fire.run_id, "failed",
                            f"timed out after {schedule.timeout_s:g}s", now)
            return
        done = state["status"] == "done"
        self._ended(schedule, fire.id, fire.attempts, fire.run_id, state["status"],
                    None if done else (state.get("error") or state["status"]), now)

    def _ended(self, schedule: ScheduleRow, fire_id: int, attempt: int, run_id: str | None, status: str,
               error: str | None, now: datetime) -> bool:
        """Record the end of attempt ``attempt`` (whose run is ``run_id``) and retry with exponential backoff,
        or decide the fire. A compare-and-set on the fire (still ``running`` that attempt with that run): when
        two schedulers see the same end, one decides, retries and notifies; False for the other."""
        drifted = (error or "").startswith("DriftDetected")  # rerunning on the same shifted data changes nothing
        retry = status not in ("done", "cancelled") and attempt <= schedule.retries and not drifted
        delay = min(schedule.retry_backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
        final = status if status in ("done", "cancelled") else "failed"
        values = (dict(status="retrying", error=error, next_attempt_at=now + timedelta(seconds=delay)) if retry
                  else dict(status=final, error=error, ended_at=now))
        with session() as s, s.begin():
            won = s.execute(update(FireRow).where(
                FireRow.id == fire_id, FireRow.attempts == attempt, FireRow.status == "running",
                FireRow.run_id.is_(None) if run_id is None else FireRow.run_id == run_id).values(**values)).rowcount
            if won != 1:
                log.info("schedule %s: attempt %d of fire %d was already decided by another scheduler",
                         schedule.name, attempt, fire_id)
                return False
            s.execute(update(FireAttemptRow).where(FireAttemptRow.fire_id == fire_id, FireAttemptRow.attempt == attempt,
                                                   FireAttemptRow.status == "running")
                      .values(status=status, ended_at=now, error=error))
            fire = s.get(FireRow, fire_id)
            body = None if retry else notify.body(schedule, fire)
        if retry:
            log.info("schedule %s: attempt %d %s; retrying in %gs", schedule.name, attempt, status, delay)
            return True
        log.info("schedule %s: fire %s %s%s", schedule.name, fire.scheduled_time, final, f" ({error})" if error else "")
        if final != "done" or schedule.notify_on_success or notify.needs_attention(body):
            self.notifier.send(schedule.notify_url, schedule.notify_command, body)
        return True


def plan_catchup(policy: str, missed: list[datetime], limit: int) -> tuple[list[datetime], list[datetime]]:
    """Split missed fire times into (run, skip) by the catch-up policy skip | latest | all."""
    if policy == "all" and limit > 0:
        return missed[-limit:], missed[:-limit] if len(missed) > limit else []
    if policy == "latest" and missed:
        return missed[-1:], missed[:-1]
    return [], missed
