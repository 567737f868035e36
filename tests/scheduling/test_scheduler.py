"""Schedules against a real SQLite store, real runs on the session Ray cluster, real scheduler processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from nb2prod.errors import UsageError
from nb2prod.scheduling import schedules, timing
from nb2prod.scheduling.models import FireRow, ScheduleRow
from nb2prod.scheduling.service import Scheduler, plan_catchup, utcnow
from nb2prod.store.db import session
from tests.conftest import make_notebook

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(autouse=True)
def no_leftover_schedules():
    """Every scheduler ticks every schedule in the store: each test removes its own."""
    yield
    for row in schedules.list_all():
        schedules.remove(row["name"])


@pytest.fixture
def quick_nb(tmp_path):
    return make_notebook(tmp_path / "quick.ipynb", [("day = 'x'\nn = 1", ["parameters"]),
                                                    ("out = f'{day}-{n}'", ["stage:only"])])


def _fires(name):
    with session() as s:
        sid = s.scalar(select(ScheduleRow.id).where(ScheduleRow.name == name))
        return s.scalars(select(FireRow).where(FireRow.schedule_id == sid).order_by(FireRow.scheduled_time)).all()


def _drain(scheduler, name, clock_now, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        scheduler.tick()
        if all(f.status in ("done", "failed", "skipped") for f in _fires(name)):
            return _fires(name)
        time.sleep(0.3)
    raise AssertionError([(f.status, f.error) for f in _fires(name)])


def test_dst_fire_times_follow_croniter():
    spring = timing.fire_times("30 2 * * *", "America/New_York", datetime(2026, 3, 7, 12), datetime(2026, 3, 9, 12))
    assert spring == [datetime(2026, 3, 8, 7, 0), datetime(2026, 3, 9, 6, 30)]  # 02:30 does not exist: 03:00 EDT
    fall = timing.fire_times("30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12), datetime(2026, 11, 1, 12))
    assert fall == [datetime(2026, 11, 1, 5, 30), datetime(2026, 11, 1, 6, 30)]  # 01:30 happens twice


def test_templates_render_and_nothing_else_is_allowed():
    t = datetime(2026, 3, 1, 7, 0)
    assert timing.render("{{ scheduled_time - 1d:%Y-%m-%d }}", t, "UTC") == "2026-02-28"
    assert timing.render("{{scheduled_time + 2h:%H}}h", t, "Europe/Paris") == "10h"
    assert timing.render("{{ scheduled_time }}", t, "UTC") == "2026-03-01T07:00:00+00:00"
    with pytest.raises(UsageError):
        timing.check_template("{{ __import__('os').system('id') }}")


def test_catchup_policies():
    missed = [datetime(2026, 1, 1, h) for h in range(5)]
    assert plan_catchup("skip", missed, 100) == ([], missed)
    assert plan_catchup("latest", missed, 100) == (missed[-1:], missed[:-1])
    assert plan_catchup("all", missed, 3) == (missed[-3:], missed[:2])


def test_add_refuses_bad_input_and_stores_nothing(quick_nb):
    for kwargs in ({"cron": "61 * * * *"}, {"cron": "@daily", "tz": "Nowhere/City"},
                   {"cron": "@daily", "parameters": {"nope": "1"}}):
        with pytest.raises(UsageError):
            schedules.add("bad", str(quick_nb), **kwargs)
    with pytest.raises(Exception, match="no such file"):
        schedules.add("bad", str(quick_nb) + ".missing", "@daily")
    assert "bad" not in [s["name"] for s in schedules.list_all()]


def test_catchup_latest_runs_once_with_rendered_parameters(quick_nb, mlflow_client):
    created = utcnow() - timedelta(hours=5, minutes=1)
    schedules.add("latest", str(quick_nb), "0 * * * *", catchup="latest",
                  parameters={"day": "{{ scheduled_time - 1d:%Y-%m-%d }}"}, now=created)
    fires = _drain(Scheduler(), "latest", utcnow())
    ran = [f for f in fires if f.status == "done"]
    assert len(ran) == 1 and len([f for f in fires if f.status == "skipped"]) == len(fires) - 1
    expected = (ran[0].scheduled_time - timedelta(days=1)).strftime("%Y-%m-%d")
    assert ran[0].parameters["day"] == expected
    parent = mlflow_client.get_run(ran[0].mlflow_run_id)
    assert parent.data.params["day"] == expected
    children = mlflow_client.search_runs([parent.info.experiment_id],
                                         f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert [c.data.tags["nb2prod.stage"] for c in children] == ["only"]


def test_two_scheduler_processes_fire_each_time_once(quick_nb):
    schedules.add("twice", str(quick_nb), "* * * * *", catchup="all", max_concurrent=5, now=utcnow() - timedelta(minutes=3, seconds=5))
    procs = [subprocess.Popen([sys.executable, "-m", "nb2prod", "scheduler", "--once"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    for p in procs:
        p.communicate(timeout=180)
    fires = _fires("twice")
    assert len(fires) == len({f.scheduled_time for f in fires}) >= 3
    assert all(f.status == "done" for f in fires), [(f.status, f.error) for f in fires]
    assert len({f.run_id for f in fires}) == len(fires)
    assert len({f.claimed_by for f in fires}) >= 1


def test_max_concurrent_skips_with_reason(tmp_path):
    slow = make_notebook(tmp_path / "slow.ipynb", [("import time\ntime.sleep(6)\nx = 1", ["stage:slow"])])
    base = utcnow().replace(second=0, microsecond=0)
    schedules.add("busy", str(slow), "* * * * *", now=base - timedelta(seconds=30))
    clock = {"now": base + timedelta(seconds=1)}
    scheduler = Scheduler(clock=lambda: clock["now"])
    assert scheduler.tick() == 1
    clock["now"] = base + timedelta(minutes=1, seconds=1)
    assert scheduler.tick() == 0
    skipped = [f for f in _fires("busy") if f.status == "skipped"]
    assert len(skipped) == 1 and "max concurrent" in skipped[0].reason


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_retries_then_webhook_on_failure(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    failing = make_notebook(tmp_path / "fail.ipynb", [("raise ValueError('nope')", ["stage:boom"])])
    schedules.add("flaky", str(failing), "* * * * *", retries=1, retry_backoff_s=0.1, catchup="latest",
                  notify_url=f"http://127.0.0.1:{server.server_port}/hook", now=utcnow() - timedelta(minutes=1, seconds=5))
    fires = _drain(Scheduler(), "flaky", utcnow())
    server.shutdown()
    fire = next(f for f in fires if f.status == "failed")
    assert fire.attempts == 2
    assert _Hook.received and _Hook.received[-1]["schedule"] == "flaky" and _Hook.received[-1]["status"] == "failed"
    assert "nope" in (_Hook.received[-1]["error"] or "")


def test_notebook_mode_logs_papermill_output_to_mlflow(quick_nb, mlflow_client):
    schedules.add("plain", str(quick_nb), "* * * * *", mode="notebook", catchup="latest",
                  parameters={"n": "7"}, now=utcnow() - timedelta(minutes=1, seconds=5))
    fires = _drain(Scheduler(), "plain", utcnow(), timeout=180)
    fire = next(f for f in fires if f.status != "skipped")
    assert fire.status == "done", fire.error
    run = mlflow_client.get_run(fire.mlflow_run_id)
    assert run.data.params["n"] == "7" and run.data.tags["nb2prod.kind"] == "notebook"
    assert "output.ipynb" in [a.path for a in mlflow_client.list_artifacts(run.info.run_id)]


def test_sigkilled_scheduler_is_taken_over_and_nothing_fires_twice(tmp_path):
    slow = make_notebook(tmp_path / "slow2.ipynb", [("import time\ntime.sleep(8)\nx = 1", ["stage:slow"])])
    schedules.add("survivor", str(slow), "* * * * *", catchup="latest", now=utcnow() - timedelta(minutes=1, seconds=5))
    env = {**os.environ, "NB2PROD_SCHEDULER_LEASE_S": "3"}
    first = subprocess.Popen([sys.executable, "-m", "nb2prod", "scheduler"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not any(f.status == "running" and f.run_id for f in _fires("survivor")) and time.time() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.Popen([sys.executable, "-m", "nb2prod", "scheduler"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            fires = [f for f in _fires("survivor") if f.status != "skipped"]
            if fires and all(f.status in ("done", "failed") for f in fires):
                break
            time.sleep(0.5)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    fires = [f for f in _fires("survivor") if f.status != "skipped"]
    assert len(fires) == len({f.scheduled_time for f in fires})
    assert fires[0].status == "done" and fires[0].attempts == 1
    assert second.returncode == 0

