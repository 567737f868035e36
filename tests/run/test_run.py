"""`nb2prod run` end to end on the session Ray cluster, asserting what MLflow and the run store hold: the fast
lane's representative runs (tests/runner_it has the thorough, slow set)."""

from __future__ import annotations

import json
import uuid

import nbformat
import pytest

from nb2prod import api
from nb2prod.contracts import RunOptions
from tests.conftest import committed, make_notebook, run_cli

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
    commit = committed(branching)
    (tmp_path / "scratch.txt").write_text("not committed")
    out_nb = tmp_path / "out.ipynb"
    record = api.run(branching, RunOptions(parameters={"ratio": 2, "label": "hello"}, no_cache=True,
                                           output_notebook=str(out_nb)))
    assert record["status"] == "done", record
    assert {n: s["status"] for n, s in record["stages"].items()} == dict.fromkeys(["make", "use", "side", "final"], "done")
    parent = mlflow_client.get_run(record["mlflow_run_id"])
    tags = parent.data.tags
    assert tags["nb2prod.kind"] == "pipeline" and tags["nb2prod.run_id"] == record["id"]
    assert tags["nb2prod.notebook"] == str(branching) and len(tags["nb2prod.notebook_sha256"]) == 64
    assert tags["mlflow.source.git.commit"] == commit and tags["nb2prod.git_dirty"] == "True"
    assert parent.data.params == {"n": "4", "ratio": "2.0", "label": "hello"}  # int accepted for a float
    assert parent.data.metrics["boxed"] == 106.0  # a class from `make` sees `use`'s globals (its mutated copy)
    assert {a.path for a in mlflow_client.list_artifacts(parent.info.run_id)} >= {
        "pipeline.json", "output.ipynb", "requirements.txt", "logs"}
    children = mlflow_client.search_runs([parent.info.experiment_id],
                                         f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_stage = {c.data.tags["nb2prod.stage"]: c for c in children}
    assert set(by_stage) == {"make", "use", "side", "final"}
    assert all(c.info.status == "FINISHED" and c.info.end_time >= c.info.start_time for c in children)
    assert by_stage["side"].data.metrics["side_metric"] == 3.0  # the stage's own MLflow call
    assert "note.txt" in {a.path for a in mlflow_client.list_artifacts(by_stage["side"].info.run_id)}
    nb = nbformat.read(out_nb, 4)
    assert nb.cells[2].metadata.tags == ["injected-parameters"] and "ratio = 2.0" in nb.cells[2].source
    side_cell = next(c for c in nb.cells if "stage:side" in c.metadata.get("tags", []))
    assert side_cell.outputs[0]["text"] == "label is hello\n"
    assert nb.metadata.papermill["parameters"]["label"] == "hello"


def test_objects_of_the_notebooks_own_modules_cross_stages(tmp_path, mlflow_client):
    """A function and an instance of a class from the notebook's own module reach stages running in other workers,
    which never imported that module: a stage unpickles its inputs with the notebook's directory on its path."""
    module = f"helpers_{uuid.uuid4().hex[:8]}"  # no warm worker has imported it
    (tmp_path / f"{module}.py").write_text("def double(v):\n    return 2 * v\n\n\nclass Offset:\n"
                                           "    def __init__(self, by):\n        self.by = by\n")
    nb = make_notebook(tmp_path / "own.ipynb", [
        ("import time", ["setup"]),
        (f"from {module} import double, Offset\noffset = Offset(1)", ["stage:make"]),
        ("time.sleep(1)\nleft = double(3) + offset.by", ["stage:left"]),  # side by side: two workers
        ("time.sleep(1)\nright = double(4) + offset.by", ["stage:right"]),
        ("total = left + right", ["stage:join", "metrics"]),
    ])
    record = api.run(nb, RunOptions(no_cache=True))
    assert record["status"] == "done", {n: s["error"] for n, s in record["stages"].items()}
    assert mlflow_client.get_run(record["mlflow_run_id"]).data.metrics["total"] == 16.0


def test_an_executed_notebook_runs_with_the_parameters_given_not_those_it_recorded(tmp_path, mlflow_client):
    """Its `injected-parameters` cell (a previous run's values) is not run, as papermill replaces it: the values
    used are the ones recorded; its output notebook has one injected cell, the new one."""
    nb = make_notebook(tmp_path / "params.ipynb", [("n = 3", ["parameters"]), ("twice = n * 2", ["stage:a", "metrics"])])
    first = tmp_path / "first.ipynb"
    assert api.run(nb, RunOptions(parameters={"n": 5}, output_notebook=str(first)))["status"] == "done"
    assert any("injected-parameters" in w["message"] for w in api.check(first)["warnings"])
    again = tmp_path / "again.ipynb"
    record = api.run(first, RunOptions(parameters={"n": 7}, output_notebook=str(again), no_cache=True))
    assert record["status"] == "done" and record["parameters"]["n"] == 7 and list(record["stages"]) == ["a"]
    assert mlflow_client.get_run(record["mlflow_run_id"]).data.metrics["twice"] == 14.0
    injected = [c for c in nbformat.read(again, 4).cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "n = 7" in injected[0].source


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


def test_a_failed_output_notebook_write_ends_the_run_failed_with_everything_else_recorded(tmp_path, mlflow_client):
    from nb2prod.home import run_dir

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    nb = make_notebook(tmp_path / "vanish.ipynb", [
        (f"import shutil\nprint('removing')\nshutil.rmtree({str(out_dir)!r})\nx = 1", ["stage:vanish"])])
    record = api.run(nb, RunOptions(output_notebook=str(out_dir / "o.ipynb"), no_cache=True))
    assert record["status"] == "failed" and record["stages"]["vanish"]["status"] == "done"
    assert record["error"]["type"] == "OutputNotebookError" and str(out_dir / "o.ipynb") in record["error"]["message"]
    directory = run_dir(record["id"])
    assert (directory / "output.ipynb").exists() and (directory / "result.json").exists()
    assert (directory / "logs" / "vanish.log").read_text() == "removing\n"
    parent = mlflow_client.get_run(record["mlflow_run_id"])
    assert parent.info.status == "FAILED" and parent.data.tags["nb2prod.status"] == "failed"
    assert "output.ipynb" in {a.path for a in mlflow_client.list_artifacts(parent.info.run_id)}
    out_dir.mkdir()  # the command line says why the run failed, though every stage succeeded
    proc = run_cli("run", str(nb), "--output-notebook", str(out_dir / "o.ipynb"), "--no-cache", "--json", "--quiet")
    assert proc.returncode == 1 and json.loads(proc.stdout)["error"]["type"] == "OutputNotebookError"
    assert "error: OutputNotebookError: the pipeline ran, but its executed notebook could not be written" in proc.stderr
