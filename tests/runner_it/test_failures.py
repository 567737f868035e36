"""A failing stage, --json on failure and on invalid notebooks, retries, timeouts, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from nb2prod import api
from nb2prod.contracts import RunOptions
from tests.conftest import make_notebook, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("any_cluster")]


@pytest.fixture
def failing(tmp_path):
    return make_notebook(tmp_path / "failing.ipynb", [
        ("import math", ["setup"]),
        ("a = 1", ["stage:root"]),
        ("b = a + 1\nc = b * 2\nraise ValueError(f'bad value {c}')\nd = c", ["stage:broken"]),
        ("e = a + 10", ["stage:independent"]),
        ("f = d + 1", ["stage:downstream"]),
        ("g = f + e", ["stage:further_down"]),
    ])


EXPECTED = {"root": "done", "broken": "failed", "independent": "done",
            "downstream": "skipped", "further_down": "skipped"}


def test_failing_stage_terminal_report(failing):
    proc = run_cli("run", str(failing), "--no-cache", "--quiet")
    assert proc.returncode == 1
    err = proc.stderr
    assert "broken" in err
    assert "cell 2" in err and "line 3" in err
    assert "ValueError" in err and "bad value 4" in err
    assert "nb2prod/runner" not in err and "nb2prod\\runner" not in err
    assert "<cell 2>" in err  # the user's own frame


def test_failing_stage_json_and_run_store(failing, mlflow_client):
    proc = run_cli("run", str(failing), "--no-cache", "--quiet", "--json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)  # exactly one JSON object: json.loads rejects trailing data
    assert isinstance(result, dict)
    assert {"schema_version", "run_id", "mlflow_run_id", "status", "duration_s", "stages"} <= set(result)
    assert result["status"] == "failed"
    assert {n: s["status"] for n, s in result["stages"].items()} == EXPECTED
    assert result["stages"]["broken"]["error"] == {"type": "ValueError", "message": "bad value 4",
                                                    "cell_index": 2, "line": 3}
    assert result["stages"]["root"]["error"] is None
    record = api.get_run(result["run_id"])
    assert record["status"] == "failed"
    assert {n: s["status"] for n, s in record["stages"].items()} == EXPECTED
    error = record["stages"]["broken"]["error"]
    assert error["type"] == "ValueError" and error["cell_index"] == 2 and error["line"] == 3
    assert "nb2prod/runner" not in (error.get("traceback") or "")
    log = run_cli("logs", result["run_id"], "broken").stdout  # ends, as a kernel's output would, with the traceback
    assert log.startswith("Traceback (most recent call last):") and log.endswith("ValueError: bad value 4\n"), log
    assert "<cell 2>" in log and "nb2prod/runner" not in log
    parent = mlflow_client.get_run(result["mlflow_run_id"])
    assert parent.info.status == "FAILED"
    children = mlflow_client.search_runs([parent.info.experiment_id],
                                         f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    status = {c.info.run_name: c.info.status for c in children}
    assert status == {"root": "FINISHED", "broken": "FAILED", "independent": "FINISHED"}  # none for skipped


def test_json_on_validation_error(tmp_path):
    nb = make_notebook(tmp_path / "invalid.ipynb", [
        ("x = missing_name + 1", ["stage:first"]),
    ])
    proc = run_cli("run", str(nb), "--json")
    assert proc.returncode != 0
    result = json.loads(proc.stdout)
    assert result["status"] == "invalid" and "missing_name" in json.dumps(result)


def test_json_on_unknown_parameter(tmp_path):
    nb = make_notebook(tmp_path / "p.ipynb", [("n = 1", ["parameters"]), ("m = n", ["stage:s"])])
    proc = run_cli("run", str(nb), "--json", "-p", "nope", "3")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["status"] == "invalid"


def test_retries_then_success_counts_attempts(tmp_path):
    counter = tmp_path / "count"
    nb = make_notebook(tmp_path / "flaky.ipynb", [
        (f"import pathlib\np = pathlib.Path({str(counter)!r})\nk = len(p.read_text()) if p.exists() else 0\n"
         "p.write_text('x' * (k + 1))\nif k < 2:\n    raise RuntimeError(f'flaky attempt {k}')\nok = k",
         ["stage:flaky", "retries:2"]),
        ("after = ok + 1", ["stage:after"]),
    ])
    record = api.run(nb, RunOptions(no_cache=True))
    assert record["status"] == "done"
    flaky = record["stages"]["flaky"]
    assert flaky["status"] == "done" and flaky["attempts"] == 3 and flaky["error"] is None
    assert counter.read_text() == "xxx"
    assert record["stages"]["after"]["status"] == "done"


def test_retries_exhausted_fails(tmp_path):
    counter = tmp_path / "count"
    nb = make_notebook(tmp_path / "always.ipynb", [
        (f"import pathlib\np = pathlib.Path({str(counter)!r})\np.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
         "raise RuntimeError('always')\nok = 1", ["stage:always", "retries:1"]),
    ])
    record = api.run(nb, RunOptions(no_cache=True))
    stage = record["stages"]["always"]
    assert record["status"] == "failed" and stage["status"] == "failed" and stage["attempts"] == 2
    assert stage["error"]["type"] == "RuntimeError" and counter.read_text() == "xx"


def test_timeout_fails_with_timeout_error(tmp_path):
    nb = make_notebook(tmp_path / "slow.ipynb", [
        ("import time\ntime.sleep(600)\nlate = 1", ["stage:slow", "timeout:1"]),
        ("quick = 2", ["stage:quick"]),
    ])
    record = api.run(nb, RunOptions(no_cache=True))  # without the kill, the test's own timeout ends it first
    slow = record["stages"]["slow"]
    assert slow["status"] == "failed" and slow["error"]["type"] == "TimeoutError" and slow["duration_s"] < 600
    assert record["stages"]["quick"]["status"] == "done" and record["status"] == "failed"


def test_ctrl_c_cancels(tmp_path, mlflow_client):
    started = tmp_path / "started"
    nb = make_notebook(tmp_path / "long.ipynb", [
        (f"import pathlib, time\npathlib.Path({str(started)!r}).write_text('x')\ntime.sleep(600)\nx = 1",
         ["stage:long"]),
        ("y = x + 1", ["stage:next"]),
    ])
    proc = subprocess.Popen([sys.executable, "-m", "nb2prod", "run", str(nb), "--no-cache", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while not started.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert started.exists()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # the stage would sleep 600 s
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert json.loads(out)["status"] == "cancelled"
    runs = [r for r in api.list_runs(notebook=str(nb)) ]
    assert runs, "the run is in the run store"
    record = api.get_run(runs[0]["id"])
    assert record["status"] == "cancelled"
    assert record["stages"]["long"]["status"] == "cancelled"
    assert record["stages"]["next"]["status"] in ("cancelled", "skipped")
    parent = mlflow_client.get_run(record["mlflow_run_id"])
    assert parent.info.status == "KILLED"
    children = mlflow_client.search_runs([parent.info.experiment_id],
                                         f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {c.info.run_name: c.info.status for c in children} == {"long": "KILLED"}
