"""The scheduler's decisions against a real store (SQLite; PostgreSQL in the slow lane) with an injected clock:
claims, catch-up, max concurrent, retries, timeouts, lease take-over, races. Runs are the scripted launcher's
(see conftest)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from nb2prod.errors import UsageError
from nb2prod.scheduling import schedules
from nb2prod.scheduling.models import FireAttemptRow
from nb2prod.scheduling.service import LEASE_S, Scheduler, alive_schedulers
from nb2prod.store.db import session
from tests.conftest import run_cli
from tests.scheduling.conftest import Clock, ScriptedLauncher, fires

pytestmark = pytest.mark.usefixtures("store_url")
T0 = datetime(2026, 3, 1, 12, 0)


def attempts(fire_id):
    with session() as s:
        return s.scalars(select(FireAttemptRow).where(FireAttemptRow.fire_id == fire_id)
                         .order_by(FireAttemptRow.attempt)).all()


def scheduler(clock, launcher=None):
    return Scheduler(clock=clock, launcher=launcher or ScriptedLauncher())


def test_add_refuses_bad_input_and_stores_nothing(plain_nb):
    bad = [dict(cron="61 * * * *"), dict(cron="@daily", tz="Nowhere/City"),
           dict(cron="@daily", parameters={"nope": "1"}), dict(cron="@daily", parameters={"n": "abc"}),
           dict(cron="@daily", parameters={"day": "{{ os.system }}"}), dict(cron="@daily", mode="batch"),
           dict(cron="@daily", catchup="some"), dict(cron="@daily", max_concurrent=0),
           dict(cron="@daily", options={"colour": "red"}), dict(cron="@daily", options={"stages": ["nope"]}),
           dict(cron="@daily", notify_url="file:///etc/passwd"), dict(cron="@daily", timeout_s=0),
           dict(cron="@daily", mode="notebook", options={"output_notebook": str(plain_nb)})]
    for kwargs in bad:
        with pytest.raises(UsageError):
            schedules.add("bad", str(plain_nb), **kwargs)
    with pytest.raises(UsageError, match="no such file"):
        schedules.add("bad", str(plain_nb) + ".missing", "@daily")
    assert schedules.list_all() == []


def test_add_list_show_pause_resume_remove(plain_nb):
    row = schedules.add("nightly", str(plain_nb), "0 2 * * *", tz="Europe/Paris",
                        parameters={"day": "{{ scheduled_time - 1d:%Y-%m-%d }}"})
    assert row["next_fire_times_local"][0].endswith("T02:00:00+01:00") or "T02:00:00+02:00" in row[
        "next_fire_times_local"][0]
    with pytest.raises(UsageError, match="already exists"):
        schedules.add("nightly", str(plain_nb), "@daily")
    assert [r["name"] for r in schedules.list_all()] == ["nightly"]
    schedules.set_paused("nightly", True)
    assert schedules.show("nightly")["paused"] is True
    schedules.set_paused("nightly", False)
    schedules.remove("nightly")
    with pytest.raises(UsageError, match="no schedule"):
        schedules.show("nightly")


def test_a_due_time_is_claimed_once_by_two_schedulers(plain_nb):
    schedules.add("s", str(plain_nb), "*/5 * * * *", now=T0)
    clock = Clock(T0 + timedelta(minutes=5, seconds=1))
    a, b = ScriptedLauncher(), ScriptedLauncher()
    assert scheduler(clock, a).tick() + scheduler(clock, b).tick() == 1
    assert len(a.launched) + len(b.launched) == 1
    (fire,) = fires("s")
    assert fire.status == "running" and fire.attempts == 1 and fire.scheduled_time == T0 + timedelta(minutes=5)


def test_schedulers_racing_for_one_due_time_start_one_run(plain_nb):
    """Exactly once under real concurrency: schedulers on their own threads (own connections and transactions)
    tick the same due time at the same moment."""
    schedules.add("s", str(plain_nb), "*/5 * * * *", now=T0)
    clock = Clock(T0 + timedelta(minutes=5, seconds=1))
    launchers = [ScriptedLauncher() for _ in range(6)]
    racers = [scheduler(clock, launcher) for launcher in launchers]
    barrier, started, errors = threading.Barrier(len(racers)), [], []

    def race(s):
        try:
            barrier.wait(30)
            started.append(s.tick())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(s,)) for s in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and sum(started) == 1 and sum(len(x.launched) for x in launchers) == 1
    (fire,) = fires("s")
    assert fire.status == "running" and fire.attempts == 1 and len(attempts(fire.id)) == 1


def test_templates_are_rendered_for_the_scheduled_time_in_the_schedule_tz(plain_nb):
    schedules.add("s", str(plain_nb), "0 2 * * *", tz="America/New_York",
                  parameters={"day": "{{ scheduled_time - 1d:%Y-%m-%d }}", "n": "3"}, now=datetime(2026, 3, 8, 0))
    launcher = ScriptedLauncher()
    scheduler(Clock(datetime(2026, 3, 8, 7, 0, 5)), launcher).tick()  # 02:00 EST does not exist that day: 03:00 EDT
    assert launcher.launched[0][1] == {"day": "2026-03-07", "n": "3"}
    assert fires("s")[0].parameters == {"day": "2026-03-07", "n": "3"}


@pytest.mark.parametrize("policy,ran,skipped", [("skip", 0, 5), ("latest", 1, 4), ("all", 5, 0)])
def test_catchup_policies(plain_nb, policy, ran, skipped):
    schedules.add("s", str(plain_nb), "0 * * * *", catchup=policy, now=T0 - timedelta(minutes=1))
    clock = Clock(T0 + timedelta(hours=4, minutes=30))  # 12:00..16:00 missed
    launcher = ScriptedLauncher()
    s = scheduler(clock, launcher)
    for _ in range(6):  # max concurrent 1: catch-up fires run one after another, oldest first
        s.tick()
        for run_id in launcher.states:
            launcher.states[run_id] = "done"
        clock.advance(seconds=1)
    s.tick()
    statuses = [f.status for f in fires("s")]
    assert statuses.count("done") == ran and statuses.count("skipped") == skipped
    done = [f.scheduled_time for f in fires("s") if f.status == "done"]
    assert [p for _, p in launcher.launched] == [{}] * ran and done == sorted(done)
    if policy == "latest":
        assert done == [T0 + timedelta(hours=4)]
    assert all("missed" in f.reason for f in fires("s") if f.status == "skipped")


def test_catchup_all_is_capped(plain_nb):
    schedules.add("s", str(plain_nb), "* * * * *", catchup="all", catchup_max=3, now=T0)
    Scheduler(clock=Clock(T0 + timedelta(minutes=10, seconds=1)), launcher=ScriptedLauncher(), grace_s=30).tick()
    by_status = {}
    for f in fires("s"):
        by_status.setdefault(f.status, []).append(f.scheduled_time.minute)
    # 12:10 is on time and starts; of the 9 missed, the newest 3 wait for a free slot, the rest are skipped
    assert by_status == {"skipped": [1, 2, 3, 4, 5, 6], "queued": [7, 8, 9], "running": [10]}


def test_max_concurrent_skips_with_reason(plain_nb):
    schedules.add("s", str(plain_nb), "* * * * *", max_concurrent=2, now=T0)
    clock = Clock(T0 + timedelta(minutes=1, seconds=1))
    s = scheduler(clock)
    assert [s.tick(), s.tick(), clock.advance(minutes=1) and s.tick(), clock.advance(minutes=1) and s.tick()] == \
        [1, 0, 1, 0]
    skipped = [f for f in fires("s") if f.status == "skipped"]
    assert len(skipped) == 1 and skipped[0].reason == "max concurrent runs (2) still going"


def test_retries_with_backoff_then_failed(plain_nb):
    schedules.add("s", str(plain_nb), "0 * * * *", retries=2, retry_backoff_s=10, now=T0 - timedelta(minutes=1))
    clock, launcher = Clock(T0 + timedelta(seconds=1)), ScriptedLauncher()
    s = scheduler(clock, launcher)
    s.tick()
    for expected_delay in (10, 20):
        launcher.states[launcher.launched[-1][0]] = "failed"
        s.tick()
        assert fires("s")[0].status == "retrying"
        clock.advance(seconds=expected_delay - 1)
        assert s.tick() == 0  # backoff not over
        clock.advance(seconds=1)
        assert s.tick() == 1
    launcher.states[launcher.launched[-1][0]] = "failed"
    s.tick()
    (fire,) = fires("s")
    assert fire.status == "failed" and fire.attempts == 3 and len(launcher.launched) == 3
    assert [a.status for a in attempts(fire.id)] == ["failed"] * 3


def test_a_failing_launch_is_a_failed_attempt_and_retried(plain_nb):
    schedules.add("s", str(plain_nb), "0 * * * *", retries=1, retry_backoff_s=5, now=T0 - timedelta(minutes=1))
    launcher, clock = ScriptedLauncher(), Clock(T0 + timedelta(seconds=1))
    launcher.fail_launch = True
    s = scheduler(clock, launcher)
    s.tick()
    launcher.fail_launch = False
    clock.advance(seconds=5)
    s.tick()
    launcher.states["run0"] = "done"
    s.tick()
    (fire,) = fires("s")
    assert fire.status == "done" and fire.attempts == 2
    assert [a.status for a in attempts(fire.id)] == ["failed", "done"] and "cannot start" in attempts(fire.id)[0].error


def test_timeout_cancels_the_run(plain_nb):
    schedules.add("s", str(plain_nb), "0 * * * *", timeout_s=60, now=T0 - timedelta(minutes=1))
    clock, launcher = Clock(T0 + timedelta(seconds=1)), ScriptedLauncher()
    s = scheduler(clock, launcher)
    s.tick()
    clock.advance(seconds=59)
    s.tick()
    assert launcher.cancelled == []
    clock.advance(seconds=2)
    s.tick()
    (fire,) = fires("s")
    assert launcher.cancelled == ["run0"] and fire.status == "failed" and "timed out after 60s" in fire.error


def test_a_dead_schedulers_fire_is_taken_over_once(plain_nb):
    schedules.add("s", str(plain_nb), "0 * * * *", retries=1, retry_backoff_s=0, now=T0 - timedelta(minutes=1))
    clock = Clock(T0 + timedelta(seconds=1))
    dead, heirs = ScriptedLauncher(), [ScriptedLauncher(), ScriptedLauncher()]
    scheduler(clock, dead).tick()  # claims, launches run0, then "dies" (never ticks again)
    heir_schedulers = [scheduler(clock, h) for h in heirs]
    for h in heirs:
        h.states["run0"] = "interrupted"  # the run died with its scheduler (same machine)
    clock.advance(seconds=LEASE_S - 5)
    for hs in heir_schedulers:
        hs.tick()
    assert fires("s")[0].status == "running" and fires("s")[0].attempts == 1  # lease still valid: hands off
    clock.advance(seconds=10)  # the lease has expired
    for hs in heir_schedulers:
        hs.tick()
    for hs in heir_schedulers:
        hs.tick()
    (fire,) = fires("s")
    assert fire.attempts == 2 and sum(len(h.launched) for h in heirs) == 1  # retried exactly once
    assert [a.status for a in attempts(fire.id)] == ["interrupted", "running"]


def test_an_adopted_run_that_is_still_going_is_not_restarted(plain_nb):
    schedules.add("s", str(plain_nb), "0 * * * *", retries=3, now=T0 - timedelta(minutes=1))
    clock = Clock(T0 + timedelta(seconds=1))
    first = scheduler(clock)
    first.tick()
    heir_launcher = ScriptedLauncher()
    heir_launcher.states["run0"] = "running"
    heir = scheduler(clock, heir_launcher)
    clock.advance(seconds=LEASE_S + 1)
    heir.tick()
    assert fires("s")[0].claimed_by == heir.id and heir_launcher.launched == []
    heir_launcher.states["run0"] = "done"
    heir.tick()
    assert fires("s")[0].status == "done" and fires("s")[0].attempts == 1


def test_paused_schedules_do_not_fire_and_resume_skips_the_pause(plain_nb):
    schedules.add("s", str(plain_nb), "* * * * *", now=T0)
    schedules.set_paused("s", True)
    assert scheduler(Clock(T0 + timedelta(minutes=3, seconds=1))).tick() == 0
    assert fires("s") == []


def test_live_schedulers_are_known_by_their_heartbeat():
    assert schedules.schedulers() == {"schedulers": [], "warning": schedules.NO_SCHEDULER}
    clock = Clock(T0)
    a, b = Scheduler(clock=clock), Scheduler(clock=clock)
    a.renew()
    b.renew()
    assert {s["id"] for s in alive_schedulers(T0)} == {a.id, b.id}
    b.retire()  # a clean stop
    clock.advance(seconds=LEASE_S / 2)
    a.renew()
    assert [s["id"] for s in alive_schedulers(clock.now)] == [a.id]
    assert alive_schedulers(clock.now + timedelta(seconds=LEASE_S + 1)) == []  # killed: its heartbeat ages out
    warning = schedules.schedulers()["warning"]  # (real clock: T0 is long past) the last one seen is named
    assert warning.startswith(schedules.NO_SCHEDULER) and f"last ran at {clock.now:%Y-%m-%d %H:%M} UTC" in warning


def test_the_cli_warns_when_no_scheduler_would_fire_the_schedule(plain_nb):
    added = run_cli("schedule", "add", "lonely", str(plain_nb), "--cron", "@daily")
    assert added.returncode == 0 and "no scheduler is running" in added.stderr, added.stderr
    Scheduler().renew()  # a scheduler beating now
    listed = run_cli("schedule", "list")
    assert "lonely" in listed.stdout and "no scheduler" not in listed.stderr


def schedule_row(name):
    from nb2prod.scheduling.models import ScheduleRow

    with session() as s:
        return s.scalar(select(ScheduleRow).where(ScheduleRow.name == name))


def test_an_attempts_end_is_decided_and_notified_once_when_two_schedulers_see_it(plain_nb, tmp_path):
    """The owner and a scheduler that took the fire over (the owner's lease lapsed) both read the fire as
    running and both see its run fail: the fire is decided, and notified, once."""
    marker = tmp_path / "notified"
    schedules.add("s", str(plain_nb), "0 * * * *", notify_command=f"echo $NB2PROD_STATUS >> {marker}",
                  now=T0 - timedelta(minutes=1))
    clock, launcher = Clock(T0 + timedelta(seconds=1)), ScriptedLauncher()
    owner, heir = scheduler(clock, launcher), scheduler(clock, launcher)
    owner.tick()
    (fire,) = fires("s")
    launcher.states["run0"] = "failed"
    for s in (owner, heir):
        s._check(schedule_row("s"), fire, fire.started_at, clock())
    for s in (owner, heir):
        s.notifier.wait()
    assert marker.read_text().split() == ["failed"]
    assert fires("s")[0].status == "failed" and [a.status for a in attempts(fire.id)] == ["failed"]


class StallingLauncher(ScriptedLauncher):
    """A launch that takes longer than a lease; ``during`` runs in the middle of it."""

    def __init__(self, during) -> None:
        super().__init__()
        self.during = during

    def launch(self, schedule, parameters):
        self.during()
        return super().launch(schedule, parameters)


def test_a_run_started_after_its_attempt_was_decided_elsewhere_is_cancelled_not_run_twice(plain_nb):
    """While the owner's launch stalls past its lease, another scheduler takes the fire over, finds no run and
    retries the fire; the owner's late run must not be recorded as the fire's (two runs of one job)."""
    schedules.add("s", str(plain_nb), "0 * * * *", retries=1, retry_backoff_s=0, now=T0 - timedelta(minutes=1))
    clock, heir_launcher = Clock(T0 + timedelta(seconds=1)), ScriptedLauncher()
    heir = scheduler(clock, heir_launcher)

    def stall():
        clock.advance(seconds=LEASE_S + 1)
        heir.tick()

    stalling = StallingLauncher(stall)
    assert scheduler(clock, stalling).tick() == 0
    assert stalling.cancelled == ["run0"]
    assert heir.tick() == 1
    (fire,) = fires("s")
    assert fire.attempts == 2 and fire.run_id == "run0" and fire.claimed_by == heir.id
    assert [(a.status, a.run_id) for a in attempts(fire.id)] == [("interrupted", "run0"), ("running", "run0")]


def test_a_row_stored_before_todays_checks_breaks_no_list_and_is_removable(plain_nb):
    from nb2prod.scheduling.models import ScheduleRow

    with session() as s, s.begin():  # rows an older nb2prod let in: a random minute, a zone that no longer exists
        for name, cron, tz in (("old name", "R 2 * * *", "UTC"), ("old zone", "0 2 * * *", "Atlantis/Capital")):
            s.add(ScheduleRow(name=name, notebook=str(plain_nb), cron=cron, timezone=tz, parameters={},
                              options={}, created_at=T0, considered_until=T0, next_fire_at=T0))
    row = schedules.add("fine", str(plain_nb), "@daily")
    rows = schedules.list_all()
    assert [r["name"] for r in rows] == ["fine", "old name", "old zone"]
    assert "random (R)" in rows[1]["problem"] and "unknown timezone" in rows[2]["problem"]
    due = datetime.fromisoformat(row["next_fire_times"][0][:-1]) + timedelta(seconds=1)
    assert scheduler(Clock(due)).tick() == 1  # the unreadable rows do not stop the good one
    listed = run_cli("schedule", "list")
    assert listed.returncode == 0 and "old zone" in listed.stdout and "Traceback" not in listed.stderr
    listed = run_cli("schedule", "list", "--json")
    assert listed.returncode == 0 and "random (R)" in json.loads(listed.stdout)[1]["problem"]
    for name in ("old name", "old zone"):
        assert run_cli("schedule", "remove", name).returncode == 0
    assert [r["name"] for r in schedules.list_all()] == ["fine"]


@pytest.mark.parametrize("name", ["", "two words", "a/b", "-flag", ".hidden", "x" * 129, "ünïcode"])
def test_one_name_rule(plain_nb, name):
    with pytest.raises(UsageError, match="schedule name"):
        schedules.add(name, str(plain_nb), "@daily")
    result = run_cli("schedule", "add", "--cron", "@daily", "--", name, str(plain_nb))
    assert result.returncode == 2 and "schedule name" in result.stderr


def test_a_compiled_pipeline_json_is_scheduled_like_its_notebook(plain_nb, tmp_path):
    from nb2prod.core.compile import compile_notebook

    spec_path, _ = compile_notebook(plain_nb, tmp_path / "compiled")
    row = schedules.add("compiled", str(spec_path), "@daily", parameters={"n": "{{ scheduled_time:%d }}", "day": "7"})
    assert row["name"] == "compiled" and schedules.show("compiled")["notebook"] == str(spec_path)
    with pytest.raises(UsageError):  # its parameters are checked as the notebook's are
        schedules.add("compiled-bad", str(spec_path), "@daily", parameters={"n": "abc"})
