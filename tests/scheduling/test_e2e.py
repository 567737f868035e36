"""End to end: real runs on the session Ray cluster (pipeline mode), real papermill (notebook mode), real
scheduler processes sharing the session's SQLite store, a real webhook server on 127.0.0.1."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from nb2prod.scheduling import schedules
from nb2prod.scheduling.models import FireAttemptRow
from nb2prod.scheduling.service import Scheduler, utcnow
from nb2prod.store import runs as store
from nb2prod.store.db import session
from tests.conftest import committed, make_notebook, run_cli
from tests.scheduling.conftest import Clock, fires

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]
FAST_LEASE = {"NB2PROD_SCHEDULER_LEASE_S": "3"}


@pytest.fixture(autouse=True)
def no_leftover_schedules():
    """Every scheduler ticks every schedule in the (session) store: each test removes its own."""
    yield
    for row in schedules.list_all():
        schedules.remove(row["name"])


@pytest.fixture
def quick_nb(tmp_path):
    return make_notebook(tmp_path / "quick.ipynb", [("day = 'x'\nn = 1", ["parameters"]),
                                                    ("out = f'{day}-{n}'", ["stage:only"])])


def attempt_statuses(fire_id):
    with session() as s:
        return s.scalars(select(FireAttemptRow.status).where(FireAttemptRow.fire_id == fire_id)
                         .order_by(FireAttemptRow.attempt)).all()


def drain(scheduler, name, timeout=150):
    deadline = time.time() + timeout
    while time.time() < deadline:
        scheduler.tick()
        if fires(name) and all(f.status in ("done", "failed", "skipped", "cancelled") for f in fires(name)):
            scheduler.notifier.wait()
            return fires(name)
        time.sleep(0.3)
    raise AssertionError([(f.status, f.error) for f in fires(name)])


def wait_for(predicate, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def missed_once():
    """A daily cron whose one fire time was a minute ago (the next is a day away) and a creation time just before
    it: a test on the real clock sees exactly one due fire, whatever minute it starts in."""
    fire = (utcnow() - timedelta(minutes=1)).replace(second=0, microsecond=0)
    return f"{fire.minute} {fire.hour} * * *", fire - timedelta(seconds=5)


def scheduler_process(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "nb2prod", "scheduler", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_pipeline_mode_catchup_latest_parent_and_stage_runs_with_rendered_parameters(quick_nb, mlflow_client):
    # a pinned clock, half past an hour: a wall clock could cross the hour mid-test and add a due fire, and a test
    # started just after the hour would have that hour's fire on time (run as well as the latest missed one)
    now = utcnow().replace(minute=30, second=0, microsecond=0)
    schedules.add("latest", str(quick_nb), "0 * * * *", catchup="latest",
                  parameters={"day": "{{ scheduled_time - 1d:%Y-%m-%d }}", "n": "5"},
                  now=now - timedelta(hours=5, minutes=1))
    all_fires = drain(Scheduler(clock=lambda: now), "latest")
    ran = [f for f in all_fires if f.status == "done"]
    assert len(ran) == 1 and len(all_fires) - 1 == len([f for f in all_fires if f.status == "skipped"]) >= 4
    expected = (ran[0].scheduled_time - timedelta(days=1)).strftime("%Y-%m-%d")
    assert ran[0].parameters == {"day": expected, "n": "5"}
    assert len(ran[0].notebook_sha256) == 64
    record = store.get_run(ran[0].run_id)
    assert record["origin"] == "scheduler" and record["notebook_sha256"] == ran[0].notebook_sha256
    parent = mlflow_client.get_run(ran[0].mlflow_run_id)
    assert parent.data.params["day"] == expected and parent.data.params["n"] == "5"
    children = mlflow_client.search_runs([parent.info.experiment_id],
                                         f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert [c.data.tags["nb2prod.stage"] for c in children] == ["only"]


def test_two_scheduler_processes_fire_each_time_once(quick_nb):
    schedules.add("twice", str(quick_nb), "* * * * *", catchup="all", now=utcnow() - timedelta(minutes=3, seconds=5))
    procs = [scheduler_process("--once", "--grace", "0") for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    got = fires("twice")
    assert len(got) == len({f.scheduled_time for f in got}) >= 3
    assert all(f.status == "done" and f.attempts == 1 for f in got), [(f.status, f.error) for f in got]
    assert len({f.run_id for f in got}) == len(got)
    runs = [store.get_run(f.run_id) for f in got]  # max concurrent 1: the catch-up runs went one after another
    spans = sorted((r["started_at"], r["ended_at"]) for r in runs)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_max_concurrent_skips_a_fire_that_finds_a_run_going(tmp_path):
    slow = make_notebook(tmp_path / "slow.ipynb", [("import time\ntime.sleep(6)\nx = 1", ["stage:slow"])])
    base = utcnow().replace(second=0, microsecond=0)
    schedules.add("busy", str(slow), "* * * * *", now=base - timedelta(seconds=30))
    clock = Clock(base + timedelta(seconds=1))
    scheduler = Scheduler(clock=clock)
    assert scheduler.tick() == 1
    clock.advance(minutes=1)
    assert scheduler.tick() == 0
    skipped = [f for f in fires("busy") if f.status == "skipped"]
    assert len(skipped) == 1 and skipped[0].reason == "max concurrent runs (1) still going"


class Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_retries_then_webhook_and_command_on_failure(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    failing = make_notebook(tmp_path / "fail.ipynb", [("raise ValueError('nope')", ["stage:boom"])])
    marker = tmp_path / "notified.json"
    cron, created = missed_once()
    schedules.add("flaky", str(failing), cron, retries=1, retry_backoff_s=0.5, catchup="latest",
                  notify_url=f"http://127.0.0.1:{server.server_port}/hook",
                  notify_command=f"cat > {marker}; test \"$NB2PROD_STATUS\" = failed",
                  now=created)
    got = drain(Scheduler(), "flaky")
    server.shutdown()
    fire = next(f for f in got if f.status == "failed")
    assert fire.attempts == 2 and attempt_statuses(fire.id) == ["failed", "failed"]
    body = Hook.received[-1]
    assert body["schedule"] == "flaky" and body["status"] == "failed" and body["run_id"] == fire.run_id
    assert "nope" in body["error"] and body["mlflow_run_id"] == fire.mlflow_run_id
    assert json.loads(marker.read_text())["run_id"] == fire.run_id


def test_a_dead_webhook_does_not_break_the_scheduler(tmp_path):
    failing = make_notebook(tmp_path / "fail.ipynb", [("raise ValueError('nope')", ["stage:boom"])])
    cron, created = missed_once()
    schedules.add("deadhook", str(failing), cron, catchup="latest", notify_url="http://127.0.0.1:9/none",
                  notify_command="exit 3", now=created)
    assert [f.status for f in drain(Scheduler(), "deadhook") if f.status != "skipped"] == ["failed"]


def test_timeout_cancels_the_run(tmp_path):
    slow = make_notebook(tmp_path / "slow3.ipynb", [("import time\ntime.sleep(60)\nx = 1", ["stage:slow"])])
    cron, created = missed_once()
    schedules.add("late", str(slow), cron, catchup="latest", timeout_s=3,
                  now=created)
    fire = next(f for f in drain(Scheduler(), "late") if f.status != "skipped")
    assert fire.status == "failed" and "timed out after 3s" in fire.error
    assert wait_for(lambda: store.get_run(fire.run_id)["status"] == "cancelled", 60)


def test_notebook_mode_logs_papermill_output_to_mlflow(quick_nb, mlflow_client):
    commit = committed(quick_nb)
    cron, created = missed_once()
    schedules.add("plain", str(quick_nb), cron, mode="notebook", catchup="latest",
                  parameters={"n": "7", "day": "{{ scheduled_time:%Y }}"}, now=created)
    fire = next(f for f in drain(Scheduler(), "plain", timeout=180) if f.status != "skipped")
    assert fire.status == "done", fire.error
    run = mlflow_client.get_run(fire.mlflow_run_id)
    assert run.data.params["n"] == "7" and run.data.params["day"] == str(fire.scheduled_time.year)
    assert run.data.tags["nb2prod.kind"] == "notebook" and run.info.status == "FINISHED"
    assert run.data.tags["nb2prod.notebook"] == str(quick_nb) and run.data.tags["mlflow.source.git.commit"] == commit
    assert "output.ipynb" in [a.path for a in mlflow_client.list_artifacts(run.info.run_id)]
    output = json.loads(open(mlflow_client.download_artifacts(run.info.run_id, "output.ipynb")).read())
    injected = [c for c in output["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "n = 7" in "".join(injected[0]["source"])
    assert output["metadata"]["papermill"]["parameters"]["n"] == 7


def test_sigkilled_scheduler_run_is_adopted_and_nothing_fires_twice(tmp_path):
    slow = make_notebook(tmp_path / "slow2.ipynb", [("import time\ntime.sleep(8)\nx = 1", ["stage:slow"])])
    cron, created = missed_once()
    schedules.add("survivor", str(slow), cron, catchup="latest", now=created)
    first = scheduler_process(env=FAST_LEASE)
    assert wait_for(lambda: any(f.status == "running" and f.run_id for f in fires("survivor")))
    first.kill()
    first.wait()
    second = scheduler_process(env=FAST_LEASE)
    try:
        assert wait_for(lambda: (lambda fs: fs and all(f.status in ("done", "failed") for f in fs))(
            [f for f in fires("survivor") if f.status != "skipped"]), 90)
    finally:
        second.send_signal(signal.SIGTERM)
        out = second.communicate(timeout=30)[0]
    ran = [f for f in fires("survivor") if f.status != "skipped"]
    assert len(ran) == len({f.scheduled_time for f in ran})
    assert ran[0].status == "done" and ran[0].attempts == 1, out  # the run outlived its scheduler: adopted
    assert second.returncode == 0 and "took over" in out and "stopped" in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses PR_SET_CHILD_SUBREAPER")
def test_sigkilled_scheduler_and_run_the_attempt_is_interrupted_and_retried(tmp_path):
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # reap the orphaned run ourselves (PID 1 here may not)
    slow = make_notebook(tmp_path / "slow4.ipynb", [("import time\ntime.sleep(5)\nx = 1", ["stage:slow"])])
    cron, created = missed_once()
    schedules.add("crash", str(slow), cron, catchup="latest", retries=1, retry_backoff_s=0,
                  now=created)
    first = scheduler_process(env=FAST_LEASE)
    assert wait_for(lambda: any(f.status == "running" and f.run_id for f in fires("crash")))
    run_id = next(f.run_id for f in fires("crash") if f.run_id)
    first.kill()
    first.wait()
    pid = _run_pid(run_id)
    os.killpg(pid, signal.SIGKILL)  # the machine "crashed": the run is gone too
    os.waitpid(pid, 0)
    second = scheduler_process(env=FAST_LEASE)
    try:
        assert wait_for(lambda: any(f.status in ("done", "failed") for f in fires("crash")), 120)
    finally:
        second.send_signal(signal.SIGTERM)
        out = second.communicate(timeout=30)[0]
    (fire,) = [f for f in fires("crash") if f.status != "skipped"]
    assert fire.status == "done" and fire.attempts == 2, out
    assert attempt_statuses(fire.id) == ["interrupted", "done"] and fire.run_id != run_id


def _run_pid(run_id):
    return store.runner_pid(run_id)


def test_cli(quick_nb, tmp_path):
    bad = run_cli("schedule", "add", "bad", str(quick_nb), "--cron", "not cron")
    assert bad.returncode == 2 and "invalid cron expression" in bad.stderr
    bad = run_cli("schedule", "add", "bad", str(quick_nb), "--cron", "@daily", "-p", "nope", "1")
    assert bad.returncode == 2 and "nope" in bad.stderr
    bad = run_cli("schedule", "add", "bad", str(tmp_path / "missing.ipynb"), "--cron", "@daily")
    assert bad.returncode == 2 and "no such file" in bad.stderr
    bad = run_cli("schedule", "add", "bad", str(quick_nb), "--cron", "@daily", "--tz", "Mars/Olympus")
    assert bad.returncode == 2 and "unknown timezone" in bad.stderr
    ok = run_cli("schedule", "add", "cli", str(quick_nb), "--cron", "30 2 * * *", "--tz", "Europe/Paris",
                 "-p", "day", "{{ scheduled_time - 1d:%Y-%m-%d }}", "--retries", "2", "--timeout", "600")
    assert ok.returncode == 0 and "02:30:00+0" in ok.stdout, ok.stderr
    listed = json.loads(run_cli("schedule", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["cli"] and listed[0]["retries"] == 2
    assert "cli" in run_cli("schedule", "list").stdout
    assert run_cli("schedule", "pause", "cli").returncode == 0
    assert json.loads(run_cli("schedule", "show", "cli", "--json").stdout)["paused"] is True
    assert run_cli("schedule", "resume", "cli").returncode == 0
    fired = run_cli("schedule", "run-now", "cli")
    assert fired.returncode == 0 and "running" in fired.stdout, fired.stderr
    once = run_cli("scheduler", "--once", env={**os.environ, **FAST_LEASE}, timeout=120)  # adopts and finishes it
    assert once.returncode == 0, once.stdout
    assert "watching 1 fire(s) started by run-now" in once.stdout and "stopped heartbeating" not in once.stdout
    shown = json.loads(run_cli("schedule", "show", "cli", "--json").stdout)
    assert shown["fires"][0]["status"] == "done" and shown["fires"][0]["parameters"]["day"]
    assert "done" in run_cli("schedule", "show", "cli").stdout
    assert run_cli("schedule", "preview", "@daily", "--tz", "Asia/Tokyo", "-n", "2").stdout.count("+09:00") == 2
    for args in (("schedule", "preview", "@daily", "-n", "0"), ("schedule", "show", "cli", "-n", "-5"),
                 ("scheduler", "--once", "--interval", "-1"), ("scheduler", "--once", "--grace", "nan")):
        refused = run_cli(*args)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, (args, refused.stderr)
    assert run_cli("schedule", "remove", "cli").returncode == 0
    assert run_cli("schedule", "show", "cli").returncode == 2
