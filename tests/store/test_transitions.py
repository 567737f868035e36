"""Every run-store state transition is a compare-and-set: races between a runner, the reaper and a cancel are
decided once, by the database, and the loser is told. Interleavings are forced with a real second connection
at an exact statement of the function under test."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from nb2prod.core.status import RunStatus
from nb2prod.errors import Nb2ProdError
from nb2prod.store import runs
from tests.store.conftest import after_statement


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def selects_running_runs(sql: str) -> bool:
    return sql.lstrip().upper().startswith("SELECT") and "FROM runs" in sql and "runs.status" in sql


def new_run(run_id: str = "r1", **fields) -> str:
    runs.create_run(run_id, "/nb/pipeline.ipynb", {"load": None, "train": None})
    if fields:
        runs.update_run(run_id, **fields)
    return run_id


def test_a_run_that_finishes_between_the_reapers_read_and_write_stays_done(store):
    """The issue's lost update: the runner finishes and exits just after the reaper read the run as running;
    the reaper then finds the pid dead. Before, it wrote ``interrupted`` over ``done`` (and a scheduler retried
    the job)."""
    run_id = new_run(pid=dead_pid())
    runs.update_stage(run_id, "load", status="done")
    with after_statement(store, selects_running_runs,
                         lambda: runs.finish_run(run_id, RunStatus.DONE)) as fired:
        runs.reap_interrupted()
    assert fired, "the reaper never read the running runs"
    record = runs.get_run(run_id)
    assert record["status"] == "done" and record["error"] is None
    assert {n: s["status"] for n, s in record["stages"].items()} == {"load": "done", "train": "skipped"}


def test_a_run_that_heartbeats_between_the_reapers_read_and_write_stays_running(store):
    """On another host the heartbeat decides: a beat after the reaper's read keeps the run alive."""
    run_id = new_run(host="elsewhere.example", heartbeat_at=runs.now() - timedelta(seconds=runs.STALE_AFTER_S + 5))
    with after_statement(store, selects_running_runs, lambda: runs.heartbeat(run_id)):
        runs.reap_interrupted()
    assert runs.get_run(run_id)["status"] == "running"


def test_a_silent_run_elsewhere_and_a_dead_runner_here_are_interrupted_once(store):
    here = new_run("here", pid=dead_pid())
    away = new_run("away", host="elsewhere.example",
                   heartbeat_at=runs.now() - timedelta(seconds=runs.STALE_AFTER_S + 5))
    alive = new_run("alive", pid=os.getpid())
    runs.reap_interrupted()
    assert [runs.get_run(r)["status"] for r in (here, away, alive)] == ["interrupted", "interrupted", "running"]
    assert runs.get_run(here)["stages"]["load"]["status"] == "skipped"


def test_the_late_runner_of_a_reaped_run_neither_finishes_nor_reopens_it(store):
    run_id = new_run(pid=dead_pid())
    runs.update_stage(run_id, "load", status="running")
    runs.reap_interrupted()
    assert runs.finish_run(run_id, RunStatus.DONE) is False
    assert runs.update_stage(run_id, "load", status="done") is False
    assert runs.update_stage(run_id, "load", mlflow_run_id="m" * 32) is True  # facts are still recorded
    assert runs.heartbeat(run_id) is True  # its runner is told to stop
    with pytest.raises(Nb2ProdError, match="interrupted"):
        runs.attach_runner(run_id, os.getpid())
    record = runs.get_run(run_id)
    assert record["status"] == "interrupted"
    assert {n: s["status"] for n, s in record["stages"].items()} == {"load": "cancelled", "train": "skipped"}


def test_a_run_ends_once_and_a_cancel_reaches_only_a_running_run(store):
    run_id = new_run()
    assert runs.heartbeat(run_id) is False
    assert runs.request_cancel(run_id) is True and runs.heartbeat(run_id) is True
    assert runs.finish_run(run_id, RunStatus.CANCELLED) is True
    assert runs.finish_run(run_id, RunStatus.DONE) is False
    assert runs.request_cancel(run_id) is False
    assert runs.get_run(run_id)["status"] == "cancelled"
    with pytest.raises(ValueError):
        runs.update_run(run_id, status="running")


def test_the_runner_that_takes_a_run_over_is_the_one_judged(store):
    """A run recorded by a process that has gone (the server that started it) lives on with its runner."""
    run_id = new_run(pid=dead_pid())
    runs.attach_runner(run_id, os.getpid())
    runs.reap_interrupted()
    assert runs.get_run(run_id)["status"] == "running"


def test_hosts_whose_clocks_differ_judge_heartbeats_by_the_servers_clock(store, monkeypatch):
    """On a server store, a runner on a host whose clock lags a minute still heartbeats "now": another host's
    reaper does not take its live run for a dead one."""
    if store.dialect.name == "sqlite":
        pytest.skip("a SQLite store is one machine's file: one clock")
    with monkeypatch.context() as lagging:
        lagging.setattr(runs, "now", lambda: datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=1))
        run_id = new_run(host="lagging.example")
        assert runs.heartbeat(run_id) is False
    runs.reap_interrupted()
    assert runs.get_run(run_id)["status"] == "running"


def test_reading_an_interrupted_run_reaps_it_without_importing_mlflow(tmp_path):
    """``api.get_run`` / ``list_runs`` only reap (once, in the store); the interrupted run's MLflow parent is
    ended by the next foreground run, where MLflow is loaded anyway."""
    code = ("import subprocess, sys\n"
            "from nb2prod import api\n"
            "from nb2prod.store import runs\n"
            "p = subprocess.Popen([sys.executable, '-c', 'pass']); p.wait()\n"
            "runs.create_run('r1', '/nb/p.ipynb', {'a': None})\n"
            "runs.update_run('r1', pid=p.pid, mlflow_run_id='m1', tracking_uri='sqlite:///x.db')\n"
            "print(api.get_run('r1')['status'], len(api.list_runs()), 'mlflow' in sys.modules)\n")
    env = {**os.environ, "NB2PROD_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.stdout.split() == ["interrupted", "1", "False"], out.stderr
