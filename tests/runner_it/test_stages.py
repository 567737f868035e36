"""Inside a stage: functions/classes across stages, mutating numpy inputs, output notebook, figures, --log-output;
and the `runs/status/logs/cancel` commands."""

from __future__ import annotations

import json
import os
import time

import nbformat
import pytest

from nb2prod import api
from nb2prod.contracts import RunOptions
from nb2prod.store.db import database_url
from tests.conftest import make_notebook, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("any_cluster")]


def test_functions_classes_and_mutated_numpy_inputs(tmp_path):
    result = tmp_path / "result.txt"
    nb = make_notebook(tmp_path / "funcs.ipynb", [
        ("import numpy as np\nOFFSET = 100", ["setup"]),
        ("factor = 3", ["parameters"]),
        ("def triple(v):\n    return v * factor + OFFSET\n\nclass Acc:\n    def __init__(self):\n        self.total = 0\n"
         "    def add(self, v):\n        self.total += triple(v)\n        return self\n\n"
         "arr = np.arange(5, dtype=np.int64)\nbig = np.zeros(2_000_000)", ["stage:define"]),
        ("arr[0] = 5\nbig[0] = 1.0\nbig += 1\nacc = Acc().add(2)\nused = (int(arr.sum()), triple(1), acc.total, float(big[0]))\n"
         f"open({str(result)!r}, 'w').write(repr(used))", ["stage:consume"]),
        ("orig_first = int(arr[0])", ["stage:other"]),
    ])
    record = api.run(nb, RunOptions(no_cache=True))
    assert record["status"] == "done", {n: s["error"] for n, s in record["stages"].items()}
    assert eval(result.read_text()) == (5 + 1 + 2 + 3 + 4, 103, 106, 2.0)


def test_output_notebook_and_figure(tmp_path):
    nb = make_notebook(tmp_path / "outnb.ipynb", [
        ("import matplotlib.pyplot as plt", ["setup"]),
        ("alpha = 1\nname = 'n'", ["parameters"]),
        ("print('first', alpha)\nx = [1, 2, 3]", ["stage:first"]),
        ("fig, ax = plt.subplots()\nax.plot(x)\nplt.show()\ny = len(x)", ["stage:plot"]),
        ("print('third', name)\nz = y + alpha\nz", ["stage:third"]),
    ])
    out_nb = tmp_path / "out.ipynb"
    record = api.run(nb, RunOptions(parameters={"alpha": 7}, no_cache=True, output_notebook=str(out_nb)))
    assert record["status"] == "done", {n: s["error"] for n, s in record["stages"].items()}
    out = nbformat.read(out_nb, 4)
    tags = [c.metadata.get("tags", []) for c in out.cells]
    assert tags[1] == ["parameters"] and tags[2] == ["injected-parameters"]
    assert "alpha = 7" in out.cells[2].source
    assert len(out.cells) == 6
    # outputs at each original cell's index (shifted by the injected cell)
    assert out.cells[3].outputs[0]["text"] == "first 7\n"
    assert any("image/png" in o.get("data", {}) for o in out.cells[4].outputs)
    third = out.cells[5].outputs
    assert third[0]["text"] == "third n\n"
    assert any(o["output_type"] == "execute_result" and o["data"]["text/plain"] == "10" for o in third)
    assert out.metadata.papermill["parameters"] == {"alpha": 7, "name": "n"} or \
        out.metadata.papermill["parameters"]["alpha"] == 7
    for key in ("start_time", "end_time", "duration"):
        assert key in out.metadata.papermill
    for cell in out.cells[3:]:
        meta = cell.metadata.papermill
        assert meta["status"] == "completed" and meta["start_time"] and meta["end_time"]
        assert meta["duration"] >= 0 and meta["exception"] is False


def test_output_notebook_marks_failed_cell(tmp_path):
    nb = make_notebook(tmp_path / "fail.ipynb", [
        ("a = 1", ["stage:ok"]),
        ("b = a\nraise KeyError('k')", ["stage:bad"]),
    ])
    out_nb = tmp_path / "out.ipynb"
    proc = run_cli("run", str(nb), "--no-cache", "--quiet", "--output-notebook", str(out_nb))
    assert proc.returncode == 1 and out_nb.exists()
    out = nbformat.read(out_nb, 4)
    tags = [c.metadata.get("tags", []) for c in out.cells]
    assert tags[0] == ["injected-parameters"]  # no parameters cell: injected at the top, like papermill
    bad = out.cells[2]
    assert any(o["output_type"] == "error" and o["ename"] == "KeyError" for o in bad.outputs)
    assert bad.metadata.papermill["status"] == "failed" and bad.metadata.papermill["exception"] is True


def test_log_output_prefixes_lines(tmp_path):
    nb = make_notebook(tmp_path / "log.ipynb", [
        ("import sys\nprint('hello from alpha')\nprint('alpha err', file=sys.stderr)\na = 1", ["stage:alpha"]),
        ("print('hello from beta')\nb = a + 1", ["stage:beta"]),
    ])
    proc = run_cli("run", str(nb), "--no-cache", "--quiet", "--log-output")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith("[alpha]") and "hello from alpha" in line for line in lines), proc.stderr
    assert any(line.startswith("[alpha]") and "alpha err" in line for line in lines), proc.stderr
    assert any(line.startswith("[beta]") and "hello from beta" in line for line in lines), proc.stderr
    assert "hello from" not in proc.stdout


def test_runs_status_logs(tmp_path):
    nb = make_notebook(tmp_path / "cmds.ipynb", [
        ("print('one says hi')\nx = 1", ["stage:one"]),
        ("print('two says hi')\ny = x + 1", ["stage:two"]),
    ])
    record = api.run(nb, RunOptions(no_cache=True))
    assert record["status"] == "done"
    runs = run_cli("runs", str(nb), "--json")
    assert runs.returncode == 0
    listed = json.loads(runs.stdout)
    assert listed[0]["id"] == record["id"]
    assert record["id"] in run_cli("runs").stdout
    for ref in (record["id"], record["mlflow_run_id"]):
        status = run_cli("status", ref, "--json")
        assert status.returncode == 0, status.stderr
        got = json.loads(status.stdout)
        assert got["id"] == record["id"] and got["status"] == "done"
        assert set(got["stages"]) == {"one", "two"}
    plain = run_cli("status", record["mlflow_run_id"])
    assert plain.returncode == 0 and "one" in plain.stdout + plain.stderr
    logs = run_cli("logs", record["id"])
    assert "one says hi" in logs.stdout and "two says hi" in logs.stdout
    one = run_cli("logs", record["mlflow_run_id"], "one")
    assert one.returncode == 0 and "one says hi" in one.stdout and "two says hi" not in one.stdout
    # another client of the same run store (a team's database) reads the logs from the run's MLflow run
    other = {**os.environ, "NB2PROD_HOME": str(tmp_path / "other-home"), "NB2PROD_DATABASE_URL": database_url()}
    logs = run_cli("logs", record["id"], "two", env=other)
    assert logs.returncode == 0 and logs.stdout == "two says hi\n", logs.stderr
    missing = run_cli("status", "no-such-run")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


def test_cancel_command(tmp_path, mlflow_client):
    started = tmp_path / "started"
    nb = make_notebook(tmp_path / "cancel.ipynb", [
        (f"import pathlib, time\npathlib.Path({str(started)!r}).write_text('x')\ntime.sleep(120)\nx = 1",
         ["stage:long"]),
    ])
    run_id = api.start_run(nb, RunOptions(no_cache=True))
    deadline = time.time() + 90
    while not started.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert started.exists()
    assert api.get_run(run_id)["status"] == "running"
    proc = run_cli("cancel", run_id)
    assert proc.returncode == 0, proc.stderr
    deadline = time.time() + 60
    while api.get_run(run_id)["status"] == "running" and time.time() < deadline:
        time.sleep(0.5)
    record = api.get_run(run_id)
    assert record["status"] == "cancelled" and record["stages"]["long"]["status"] == "cancelled"
    assert mlflow_client.get_run(record["mlflow_run_id"]).info.status == "KILLED"
