"""Detached runner processes (``api.start_run``, the scheduler's notebook mode) are reaped by the process that
started them: a runner that died reads ``interrupted``, never ``running`` forever (no Ray needed: the runner is
killed before it gets that far)."""

from __future__ import annotations

import os
import signal
import stat
import time

import psutil
import pytest

from nb2prod import api
from nb2prod.home import run_dir
from nb2prod.contracts import RunOptions
from nb2prod.scheduling.launch import Launcher
from tests.conftest import make_notebook


def _child_running(run_id: str) -> psutil.Process:
    for child in psutil.Process().children():
        try:
            if run_id in " ".join(child.cmdline()):
                return child
        except psutil.Error:  # an earlier test's process that has exited and is not reaped yet
            continue
    raise AssertionError(f"no runner process for run {run_id}")


def _status_after_kill(run_id: str) -> str:
    os.kill(_child_running(run_id).pid, signal.SIGKILL)
    deadline = time.time() + 10
    status = api.get_run(run_id)["status"]
    while status == "running" and time.time() < deadline:
        time.sleep(0.1)
        status = api.get_run(run_id)["status"]
    return status


def test_a_started_run_whose_runner_died_is_interrupted(tmp_path, nb2prod_home):
    nb = make_notebook(tmp_path / "detached.ipynb", [("import time\ntime.sleep(120)\nx = 1", ["stage:slow"])])
    run_id = api.start_run(nb, RunOptions(parameters={}))
    assert stat.S_IMODE((run_dir(run_id) / "options.json").stat().st_mode) == 0o600
    assert _status_after_kill(run_id) == "interrupted"
    from click.testing import CliRunner

    from nb2prod.cli import cli, runs  # noqa: F401  (registers `status`)

    shown = CliRunner().invoke(cli, ["status", run_id])  # the run's own error, not only its stages'
    assert shown.exit_code == 0 and "error: Interrupted: the runner process stopped" in shown.output
    logged = CliRunner().invoke(cli, ["logs", run_id, "slow"])
    assert logged.exit_code == 0 and "(slow: no output captured; the stage is " in logged.output


def test_a_notebook_mode_runner_that_died_is_interrupted(tmp_path, nb2prod_home):
    nb = make_notebook(tmp_path / "plain.ipynb", [("import time\ntime.sleep(120)", [])])

    class Schedule:  # what the launcher reads of a schedule row
        notebook, mode, options = str(nb), "notebook", {}

    run_id, _ = Launcher().launch(Schedule(), {})
    assert _status_after_kill(run_id) == "interrupted"
    assert Launcher().status(run_id)["status"] == "interrupted"


@pytest.mark.slow  # a papermill kernel run (~10 s)
def test_a_notebook_mode_run_whose_output_notebook_cannot_be_written_ends_failed(tmp_path, nb2prod_home):
    nb = make_notebook(tmp_path / "quick.ipynb", [("x = 1", [])])
    target = tmp_path / "missing" / "out.ipynb"

    class Schedule:
        notebook, mode, options = str(nb), "notebook", {"output_notebook": str(target)}

    run_id, _ = Launcher().launch(Schedule(), {})
    deadline = time.time() + 120
    while api.get_run(run_id)["status"] == "running" and time.time() < deadline:
        time.sleep(0.3)
    record = api.get_run(run_id)
    assert record["status"] == "failed", record
    assert record["error"]["type"] == "OutputNotebookError" and str(target) in record["error"]["message"]
    assert (run_dir(run_id) / "output.ipynb").exists()  # the executed notebook is kept


def test_a_runner_that_cannot_be_started_ends_the_run_failed(tmp_path, nb2prod_home, monkeypatch):
    from nb2prod.errors import Nb2ProdError

    nb = make_notebook(tmp_path / "nostart.ipynb", [("x = 1", ["stage:one"])])
    monkeypatch.setattr("sys.executable", str(tmp_path / "no-python"))
    with pytest.raises(Nb2ProdError, match="could not start"):
        api.start_run(nb, RunOptions())
    record = api.list_runs(nb)[0]
    assert record["status"] == "failed" and "no-python" in record["error"]["message"]


@pytest.mark.slow  # waits out CLOSE_WAIT_S by design
@pytest.mark.timeout(90)
def test_a_gone_tracking_server_does_not_hold_the_next_run(nb2prod_home):
    """An interrupted run's MLflow run is closed at the end of the next run; its tracking server being gone cost
    that run MLflow's HTTP retries (over four minutes) after its pipeline had finished."""
    from nb2prod.store import runs
    from tests.conftest import free_port
    from tests.store.test_transitions import dead_pid, new_run

    run_id = new_run(pid=dead_pid(), mlflow_run_id="0" * 32, tracking_uri=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    try:
        api._close_interrupted()
        assert time.monotonic() - started < api.CLOSE_WAIT_S + 30  # bounded, not MLflow's minutes of retries
        assert runs.get_run(run_id)["status"] == "interrupted"
    finally:  # later tests' runs would try again (the closing thread retries for minutes in the background)
        runs.update_run(run_id, mlflow_closed=True)
