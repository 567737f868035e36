"""Registration, gates, promotion and drift on real runs: the test Ray cluster, a real MLflow store and its
model registry, data shifted on purpose (and not)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from nb2prod import api
from nb2prod.contracts.options import RunOptions
from tests.conftest import make_notebook, run_cli

pytestmark = pytest.mark.slow


def _retag(path: Path, old: str, new: str) -> None:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        cell.get("metadata", {})["tags"] = [new if t == old else t for t in tags]
    path.write_text(json.dumps(nb))


@pytest.fixture
def model_name() -> str:
    return f"wine-{uuid.uuid4().hex[:8]}"


def test_example_promotes_then_refuses_on_drift(ray_cluster, example_notebook, mlflow_client, model_name):
    _retag(example_notebook, "register:best_model=wine-classifier", f"register:best_model={model_name}")
    experiment = f"promote-{model_name}"
    first = api.run(example_notebook, RunOptions(gates=["accuracy>=0.9"], promote="champion", experiment=experiment,
                                                 no_cache=True))
    assert first["status"] == "done" and first["gate"]["status"] == "passed", first
    assert first["promotion"] == {"alias": "champion", "model": model_name, "version": 1, "moved": True,
                                  "reason": first["promotion"]["reason"]}
    assert first["drift"] is None  # no reference yet
    holder = mlflow_client.get_model_version_by_alias(model_name, "champion")
    assert str(holder.version) == "1" and holder.run_id == first["stages"]["evaluate"]["mlflow_run_id"]
    parent = mlflow_client.get_run(first["mlflow_run_id"])
    assert parent.data.tags["nb2prod.gate.status"] == "passed"
    assert parent.data.tags["nb2prod.promotion.moved"] == "True"
    from mlflow.models import Model

    local = mlflow_client.download_artifacts(holder.run_id, "models/best_model")
    mlmodel = Model.load(local)
    assert "sklearn" in mlmodel.flavors and mlmodel.signature is not None and mlmodel.saved_input_example_info
    import mlflow.pyfunc

    # read as MLflow reads it (typed by the signature): plain pandas re-infers whole-number float columns
    # (magnesium, proline) as int64, which MLflow's schema refuses for a double column
    example = mlmodel.load_input_example(local)
    assert list(example.columns) == mlmodel.signature.inputs.input_names()
    assert set(map(str, example.dtypes)) == {"float64"}  # the features' dtype in the stage
    assert len(mlflow.pyfunc.load_model(local).predict(example)) == len(example)

    shifted = api.run(example_notebook, RunOptions(parameters={"shift": 3.0}, gates=["accuracy>=0.1"],
                                                   promote="champion", experiment=experiment, no_cache=True))
    assert shifted["status"] == "done" and shifted["drift"]["drifted"]
    assert shifted["drift"]["reference"] == first["mlflow_run_id"]  # the champion's run
    assert shifted["drift"]["columns"] == {"X_test": ["alcohol"]}
    promotion = shifted["promotion"]
    assert promotion["version"] == 2 and not promotion["moved"] and promotion["reason"].startswith("data drifted")
    assert str(mlflow_client.get_model_version_by_alias(model_name, "champion").version) == "1"
    assert "data drifted" in mlflow_client.get_model_version(model_name, "2").tags["nb2prod.not_promoted"]
    metrics = mlflow_client.get_run(shifted["mlflow_run_id"]).data.metrics
    assert metrics["drift.X_test.alcohol.psi"] > 0.2 and metrics["drift.X_test.max_psi"] > 0.2
    assert metrics["drift.X_test.ash.psi"] < 0.2 and "drift.X_test.ash.ks_pvalue" in metrics
    stage_metrics = mlflow_client.get_run(shifted["stages"]["split"]["mlflow_run_id"]).data.metrics
    assert "drift.X_test.alcohol.psi" in stage_metrics
    assert mlflow_client.get_run(shifted["mlflow_run_id"]).data.tags["nb2prod.drifted"] == "true"

    same = api.run(example_notebook, RunOptions(gates=["accuracy>=0.1"], promote="champion", experiment=experiment,
                                                no_cache=True))
    assert same["drift"]["drifted"] is False and same["promotion"]["moved"]  # not worse than v1: same data, same model
    assert str(mlflow_client.get_model_version_by_alias(model_name, "champion").version) == "3"


def test_failed_gate_keeps_run_done_exits_1_and_cached_stage_registers_nothing(ray_cluster, example_notebook,
                                                                                mlflow_client, model_name):
    _retag(example_notebook, "register:best_model=wine-classifier", f"register:best_model={model_name}")
    result = run_cli("run", str(example_notebook), "--gate", "accuracy>=1.5", "--gate", "f1>=0.5", "--promote",
                     "champion", "--json", "--quiet", "--experiment", f"gate-{model_name}", timeout=600)
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "done" and out["gate"]["status"] == "failed"
    assert "accuracy" in out["gate"]["reason"] and "f1 not logged" in out["gate"]["reason"]
    assert out["promotion"]["moved"] is False and "gate failed" in out["promotion"]["reason"]
    assert "gate failed" in result.stderr
    assert mlflow_client.get_model_version(model_name, "1").tags["nb2prod.not_promoted"].startswith("gate failed")
    again = api.run(example_notebook, RunOptions(promote="champion", experiment=f"gate-{model_name}"))
    assert again["stages"]["evaluate"]["status"] == "cached"
    assert again["promotion"]["version"] is None and "cached" in again["promotion"]["reason"]
    assert len(mlflow_client.search_model_versions(f"name='{model_name}'")) == 1


def test_fail_on_drift_skips_consumers_and_fails_the_run(ray_cluster, tmp_path):
    nb = make_notebook(tmp_path / "score.ipynb", [
        ("import numpy as np\nimport pandas as pd", ["setup"]),
        ("shift = 0.0\nseed = 0", ["parameters"]),
        ("rng = np.random.default_rng(seed)\nbatch = pd.DataFrame({'a': rng.normal(0, 1, 3000) + shift, "
         "'b': rng.choice(['x', 'y'], 3000)})", ["stage:load", "monitor:batch"]),
        ("scores = batch['a'] * 2", ["stage:score"]),
        ("published = len(scores)", ["stage:publish"]),
        ("other = 1", ["stage:other"]),
    ])
    experiment = f"drift-{uuid.uuid4().hex[:6]}"
    base = api.run(nb, RunOptions(experiment=experiment, fail_on_drift=True, drift_reference="previous"))
    assert base["status"] == "done" and base["drift"] is None
    missing = run_cli("run", str(nb), "--experiment", experiment, "--drift-reference", "0" * 32, "--no-cache", "--quiet",
                      timeout=600)
    assert missing.returncode == 1 and "was lost" not in missing.stderr, missing.stderr
    assert f"--drift-reference {'0' * 32}: no such run in the tracking store" in missing.stderr
    calm = api.run(nb, RunOptions(parameters={"seed": 1}, experiment=experiment, fail_on_drift=True,
                                  drift_reference="previous"))
    assert calm["status"] == "done" and calm["drift"]["drifted"] is False
    result = run_cli("run", str(nb), "-p", "shift", "2.0", "-p", "seed", "2", "--experiment", experiment,
                     "--fail-on-drift", "--drift-reference", base["id"], "--json", "--quiet", timeout=600)
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    record = api.get_run(out["run_id"])
    assert record["status"] == "failed" and record["error"]["type"] == "DriftDetected"
    statuses = {n: s["status"] for n, s in record["stages"].items()}
    assert statuses.pop("other") in ("done", "cached")  # independent of the drifted variable: runs (or is reused)
    assert statuses == {"load": "done", "score": "skipped", "publish": "skipped"}
    assert record["drift"]["columns"] == {"batch": ["a"]} and record["drift"]["reference"] == base["mlflow_run_id"]
    assert "batch drifted" in record["error"]["message"]


def test_pyfunc_fallback_for_a_plain_object(ray_cluster, tmp_path, mlflow_client, model_name):
    nb = make_notebook(tmp_path / "plain.ipynb", [
        ("import numpy as np", ["setup"]),
        ("X = np.arange(12, dtype=float).reshape(4, 3)", ["stage:data"]),
        ("class Doubler:\n    def predict(self, x):\n        return np.asarray(x).sum(axis=1) * 2\n"
         "model = Doubler()", ["stage:fit", f"register:model={model_name}"]),
    ])
    record = api.run(nb, RunOptions(experiment=f"pyfunc-{model_name}"))
    assert record["status"] == "done", record
    version = mlflow_client.get_model_version(model_name, "1")
    assert version.run_id == record["stages"]["fit"]["mlflow_run_id"]
    import mlflow.pyfunc
    import numpy as np

    local = mlflow_client.download_artifacts(version.run_id, "models/model")
    from mlflow.models import Model

    assert list(Model.load(local).flavors) == ["python_function"]
    assert list(mlflow.pyfunc.load_model(local).predict(np.ones((2, 3)))) == [6.0, 6.0]


def test_monitor_of_a_non_table_fails_the_stage_with_its_cell(ray_cluster, tmp_path):
    nb = make_notebook(tmp_path / "bad.ipynb", [("x = [1, 2, 3]", ["stage:a", "monitor:x"])])
    record = api.run(nb, RunOptions())
    error = record["stages"]["a"]["error"]
    assert record["status"] == "failed" and error["cell_index"] == 0 and "2-D array" in error["message"]
