"""`nb2prod run` end to end on the session Ray cluster, asserting what MLflow and the run store hold."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from nb2prod import api
from nb2prod.contracts import RunOptions
from tests.conftest import make_notebook, run_cli

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture
def branching(tmp_path):
    return make_notebook(tmp_path / "branching.ipynb", [
        ("import numpy as np", ["setup"]),
        ("n = 4\nratio = 0.5\nlabel = 'x'", ["parameters"]),
        ("arr = np.arange(n, dtype=float)\n\ndef scale(v):\n    return v * ratio\n\nclass Box:\n    def total(self):\n"
         "        return float(arr.sum())", ["stage:make"]),
        ("arr[0] = 100.0\nscaled = scale(arr)\nboxed = Box().total()", ["stage:use", "metrics"]),
        ("import mlflow, nb2prod\nmlflow.log_metric('side_metric', 3.0)\n(nb2prod.stage_dir() / 'note.txt').write_text(label)\n"
         "print('label is', label)\nside = len(label)", ["stage:side"]),
        ("final = float(scaled.sum()) + side", ["stage:final"]),
    ])


def test_successful_run_is_tracked(branching, mlflow_client, tmp_path):
    out_nb = tmp_path / "out.ipynb"
    record = api.run(branching, RunOptions(parameters={"ratio": 2, "label": "hello"}, no_cache=True,
                                           output_notebook=str(out_nb)))
    assert record["status"] == "done", record
    assert {n: s["status"] for n, s in record["stages"].items()} == dict.fromkeys(["make", "use", "side", "final"], "done")
    parent = mlflow_client.get_run(record["mlflow_run_id"])
    tags = parent.data.tags
    assert tags["nb2prod.kind"] == "pipeline" and tags["nb2prod.run_id"] == record["id"]
    assert tags["nb2prod.notebook"] == str(branching) and len(tags["nb2prod.notebook_sha256"]) == 64
    assert parent.data.params == {"n": "4", "ratio": "2.0", "label": "hello"}  # int accepted for a float
    assert parent.data.metrics["boxed"] == 106.0  # a class from `make` sees `use`'s globals (its mutated copy)
    assert {a.path for a in mlflow_client.list_artifacts(parent.info.run_id)} >= {
        "pipeline.json", "output.ipynb", "requirements.txt", "logs"}
    children = mlflow_client.search_runs([parent.info.experiment_id],
                                         f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_stage = {c.data.tags["nb2prod.stage"]: c for c in children}
    assert set(by_stage) == {"make", "use", "side", "final"}
    assert all(c.info.status == "FINISHED" and "nb2prod.duration_s" in c.data.metrics for c in children)
    assert by_stage["side"].data.metrics["side_metric"] == 3.0  # the stage's own MLflow call
    assert "note.txt" in {a.path for a in mlflow_client.list_artifacts(by_stage["side"].info.run_id)}
    nb = nbformat.read(out_nb, 4)
    assert nb.cells[2].metadata.tags == ["injected-parameters"] and "ratio = 2.0" in nb.cells[2].source
    side_cell = next(c for c in nb.cells if "stage:side" in c.metadata.get("tags", []))
    assert side_cell.outputs[0]["text"] == "label is hello\n"
    assert nb.metadata.papermill["parameters"]["label"] == "hello"


def test_parameter_values_stay_values(branching, tmp_path):
    evil = "x'); import os; os.system('touch " + str(tmp_path / "pwned") + "'); ('\n__import__('sys').exit(3)"
    record = api.run(branching, RunOptions(parameters={"label": evil}, no_cache=True))
    assert record["status"] == "done" and not (tmp_path / "pwned").exists()
    from nb2prod.cache import load_stage_outputs

    assert load_stage_outputs(record["id"], "side")["side"] == len(evil)


def test_failure_skips_downstream_and_reports_the_cell(tmp_path):
    nb = make_notebook(tmp_path / "fails.ipynb", [
        ("a = 1", ["stage:root"]),
        ("b = a\nc = 1 / 0", ["stage:broken"]),
        ("d = a + 1", ["stage:independent"]),
        ("e = c + d", ["stage:downstream"]),
    ])
    proc = run_cli("run", str(nb), "--json", "--quiet", "--no-cache")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert {n: s["status"] for n, s in result["stages"].items()} == {
        "root": "done", "broken": "failed", "independent": "done", "downstream": "skipped"}
    assert result["stages"]["broken"]["error"] == {"type": "ZeroDivisionError", "message": "division by zero",
                                                    "cell_index": 1, "line": 2}
    assert "stage 'broken' failed (cell 1, line 2): ZeroDivisionError" in proc.stderr
    assert "nb2prod/runner" not in proc.stderr and '<cell 1>", line 2' in proc.stderr


def test_bad_parameters_are_usage_errors(branching):
    unknown = run_cli("run", str(branching), "-p", "nope", "1")
    assert unknown.returncode == 2 and "n (int), ratio (float), label (str)" in unknown.stderr
    wrong = run_cli("run", str(branching), "-p", "n", "1.5", "--json")
    assert wrong.returncode == 2 and json.loads(wrong.stdout)["status"] == "invalid"


def test_secrets_are_never_recorded(branching, mlflow_client, tmp_path):
    record = api.run(branching, RunOptions(parameters={"label": "s3cr3t-value"}, secrets=["label"], no_cache=True))
    assert record["status"] == "done" and record["parameters"]["label"] == "***"
    parent = mlflow_client.get_run(record["mlflow_run_id"])
    assert parent.data.params["label"] == "***"
    from mlflow.artifacts import download_artifacts

    local = Path(download_artifacts(run_id=parent.info.run_id, dst_path=str(tmp_path / "dl"),
                                    tracking_uri=mlflow_client.tracking_uri))
    for path in local.rglob("*"):
        if path.is_file():
            assert "s3cr3t-value" not in path.read_text(errors="ignore"), path
    logs = run_cli("logs", record["id"], "side")
    assert "label is ***" in logs.stdout


def test_retries_and_timeout(tmp_path):
    counter = tmp_path / "count"
    nb = make_notebook(tmp_path / "flaky.ipynb", [
        (f"import pathlib\np = pathlib.Path({str(counter)!r})\nn = len(p.read_text()) if p.exists() else 0\n"
         "p.write_text('x' * (n + 1))\nassert n >= 2, 'flaky'\nok = n", ["stage:flaky", "retries:2"]),
        ("import time\ntime.sleep(30)\nlate = 1", ["stage:slow", "timeout:1"]),
    ])
    record = api.run(nb, RunOptions(no_cache=True))
    assert record["stages"]["flaky"]["status"] == "done" and record["stages"]["flaky"]["attempts"] == 3
    slow = record["stages"]["slow"]
    assert slow["status"] == "failed" and slow["error"]["type"] == "TimeoutError"


def test_ctrl_c_cancels_the_run(tmp_path, mlflow_client):
    started = tmp_path / "started"
    nb = make_notebook(tmp_path / "long.ipynb", [
        (f"import pathlib, time\npathlib.Path({str(started)!r}).write_text('x')\ntime.sleep(120)\nx = 1",
         ["stage:long"]),
    ])
    proc = subprocess.Popen([sys.executable, "-m", "nb2prod", "run", str(nb), "--json", "--quiet", "--no-cache"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    result = json.loads(out)
    assert result["status"] == "cancelled" and result["stages"]["long"]["status"] == "cancelled"
    assert api.get_run(result["run_id"])["status"] == "cancelled"
    assert mlflow_client.get_run(result["mlflow_run_id"]).info.status == "KILLED"


def test_runs_status_logs_cancel_commands(branching):
    record = api.run(branching, RunOptions(no_cache=True))
    listing = run_cli("runs", str(branching), "--json")
    assert record["id"] in [r["id"] for r in json.loads(listing.stdout)]
    by_mlflow = run_cli("status", record["mlflow_run_id"], "--json")
    assert json.loads(by_mlflow.stdout)["id"] == record["id"]
    assert "label is x" in run_cli("logs", record["id"]).stdout
    missing = run_cli("status", "does-not-exist")
    assert missing.returncode == 1 and "no run" in missing.stderr and "Traceback" not in missing.stderr
