"""The scheduler: decide due fire times, claim each exactly once in the database, launch and watch runs.

Exactly once: a fire is a row with UNIQUE(schedule_id, scheduled_time); inserting it is the claim, so two
schedulers sharing a store cannot both fire a time. The claimer holds a lease it renews every tick; a fire
whose lease expired (its scheduler died) is taken over by the next scheduler: a run still going is adopted,
an ended one recorded, an interrupted one retried if the schedule allows. The clock is injectable.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from nb2prod.scheduling import notify, timing
from nb2prod.scheduling.models import FireAttemptRow, FireRow, ScheduleRow
from nb2prod.store.db import session

log = logging.getLogger("nb2prod.scheduler")
LEASE_S = float(os.environ.get("NB2PROD_SCHEDULER_LEASE_S", 30))
ON_TIME_S = 90.0  # a fire time older than this when first seen was missed (catch-up policy applies)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Scheduler:
    """One scheduler process (or thread inside a Jupyter server). ``tick()`` does one round of work."""

    def __init__(self, clock: Callable[[], datetime] = utcnow, launcher: Any = None) -> None:
        from nb2prod.scheduling.launch import Launcher

        self.clock = clock
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.launcher = launcher or Launcher()

    def tick(self) -> int:
        """Fire what is due, watch what runs; returns how many fires were started."""
        now = self.clock()
        started = 0
        with session() as s:
            schedules = s.scalars(select(ScheduleRow).where(ScheduleRow.paused.is_(False),
                                                            ScheduleRow.next_fire_at <= now)).all()
        for schedule in schedules:
            started += self._fire_due(schedule, now)
        self._watch(now)
        return started

    # --- deciding and claiming --------------------------------------------------------
    def _fire_due(self, schedule: ScheduleRow, now: datetime) -> int:
        due = timing.fire_times(schedule.cron, schedule.timezone, schedule.considered_until, now)
        if not due:
            return 0
        on_time = [t for t in due if (now - t).total_seconds() <= ON_TIME_S]
        missed = [t for t in due if t not in on_time]
        run, skip = plan_catchup(schedule.catchup, missed, schedule.catchup_max)
        with session() as s, s.begin():  # advance first: a crash from here on never re-decides these times
            s.execute(update(ScheduleRow).where(ScheduleRow.id == schedule.id,
                                                ScheduleRow.considered_until < due[-1])
                      .values(considered_until=due[-1],
                              next_fire_at=timing.next_fire(schedule.cron, schedule.timezone, due[-1])))
        for t in skip:
            self._claim(schedule, t, "skipped", f"missed while no scheduler ran (catch-up={schedule.catchup})")
        return sum(self._start(schedule, t, now) for t in run + on_time)

    def _claim(self, schedule: ScheduleRow, t: datetime, status: str, reason: str | None = None) -> FireRow | None:
        fire = FireRow(schedule_id=schedule.id, scheduled_time=t, status=status, reason=reason, claimed_by=self.id,
                       lease_until=self.clock() + timedelta(seconds=LEASE_S))
        try:
            with session() as s, s.begin():
                s.add(fire)
            return fire
        except IntegrityError:
            return None  # another scheduler owns this time

    def _start(self, schedule: ScheduleRow, t: datetime, now: datetime) -> int:
        with session() as s:
            active = s.scalar(select(FireRow.id).where(FireRow.schedule_id == schedule.id,
                                                       FireRow.status.in_(("running", "retrying")))
                              .limit(schedule.max_concurrent).offset(schedule.max_concurrent - 1))
        if active is not None:
            self._claim(schedule, t, "skipped", f"max concurrent runs ({schedule.max_concurrent}) still going")
            return 0
        fire = self._claim(schedule, t, "running")
        if fire is None:
            return 0
        self._launch(schedule, fire, now)
        return 1

    def _launch(self, schedule: ScheduleRow, fire: FireRow, now: datetime) -> None:
        attempt = fire.attempts + 1
        params = {k: timing.render(v, fire.scheduled_time, schedule.timezone) for k, v in schedule.parameters.items()}
        try:
            run_id, sha = self.launcher.launch(schedule, params)
            error, status = None, "running"
        except Exception as exc:  # noqa: BLE001 - a bad notebook fails this fire, not the scheduler
            run_id, sha, error, status = None, None, f"{type(exc).__name__}: {getattr(exc, 'message', exc)}", "failed"
        with session() as s, s.begin():
            s.execute(update(FireRow).where(FireRow.id == fire.id).values(
                status=status, attempts=attempt, run_id=run_id, notebook_sha256=sha, parameters=params,
                started_at=fire.started_at or now, next_attempt_at=None, error=error,
                ended_at=None if status == "running" else now))
            s.add(FireAttemptRow(fire_id=fire.id, attempt=attempt, run_id=run_id, status=status, started_at=now,
                                 ended_at=None if status == "running" else now, error=error))
        log.info("schedule %s: fired %s (attempt %d) -> %s %s", schedule.name, fire.scheduled_time, attempt,
                 status, run_id or error)
        if status == "failed":
            self._finish(schedule, fire.id, "failed", error, now)

    # --- watching -----------------------------------------------------------------------
    def _watch(self, now: datetime) -> None:
        lease = now + timedelta(seconds=LEASE_S)
        with session() as s, s.begin():
            s.execute(update(FireRow).where(FireRow.claimed_by == self.id, FireRow.status.in_(("running", "retrying")))
                      .values(lease_until=lease))
            # take over fires whose scheduler died (lease expired); the UPDATE is the atomic claim
            s.execute(update(FireRow).where(FireRow.status.in_(("running", "retrying")), FireRow.lease_until < now)
                      .values(claimed_by=self.id, lease_until=lease))
        with session() as s:
            fires = s.scalars(select(FireRow).where(FireRow.claimed_by == self.id,
                                                    FireRow.status.in_(("running", "retrying")))).all()
            schedules = {f.schedule_id: s.get(ScheduleRow, f.schedule_id) for f in fires}
        for fire in fires:
            self._check(schedules[fire.schedule_id], fire, now)

    def _check(self, schedule: ScheduleRow, fire: FireRow, now: datetime) -> None:
        if fire.status == "retrying":
            if fire.next_attempt_at and fire.next_attempt_at <= now:
                self._launch(schedule, fire, now)
            return
        state = self.launcher.status(fire.run_id) if fire.run_id else {"status": "interrupted", "error": None}
        if state["status"] == "running":
            if schedule.timeout_s and fire.started_at and (now - fire.started_at).total_seconds() > schedule.timeout_s:
                self.launcher.cancel(fire.run_id)
                self._ended(schedule, fire, "failed", f"timed out after {schedule.timeout_s:g}s", now)
            return
        if state.get("mlflow_run_id"):
            with session() as s, s.begin():
                s.execute(update(FireRow).where(FireRow.id == fire.id).values(mlflow_run_id=state["mlflow_run_id"]))
        error = state.get("error")
        self._ended(schedule, fire, "done" if state["status"] == "done" else state["status"],
                    None if state["status"] == "done" else (error or state["status"]), now)

    def _ended(self, schedule: ScheduleRow, fire: FireRow, status: str, error: str | None, now: datetime) -> None:
        with session() as s, s.begin():
            s.execute(update(FireAttemptRow).where(FireAttemptRow.fire_id == fire.id,
                                                   FireAttemptRow.attempt == fire.attempts)
                      .values(status=status, ended_at=now, error=error))
        if status != "done" and fire.attempts <= schedule.retries:
            delay = schedule.retry_backoff_s * 2 ** (fire.attempts - 1)
            with session() as s, s.begin():
                s.execute(update(FireRow).where(FireRow.id == fire.id).values(
                    status="retrying", error=error, next_attempt_at=now + timedelta(seconds=delay)))
            return
        self._finish(schedule, fire.id, "done" if status == "done" else "failed", error, now)

    def _finish(self, schedule: ScheduleRow, fire_id: int, status: str, error: str | None, now: datetime) -> None:
        with session() as s, s.begin():
            s.execute(update(FireRow).where(FireRow.id == fire_id).values(status=status, error=error, ended_at=now))
            fire = s.get(FireRow, fire_id)
        if status == "failed" or schedule.notify_on_success:
            notify.send(schedule, fire)


def plan_catchup(policy: str, missed: list[datetime], limit: int) -> tuple[list[datetime], list[datetime]]:
    """Split missed fire times into (run, skip) by the catch-up policy skip | latest | all."""
    if policy == "all":
        return missed[-limit:], missed[:-limit] if len(missed) > limit else []
    if policy == "latest" and missed:
        return missed[-1:], missed[:-1]
    return [], missed

