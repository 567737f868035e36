"""Attached runs on a cluster that cannot see the client's files (one and two nodes): the client's SQLite MLflow
store gets the parent and stage runs, metrics, artifacts, stage code's own MLflow calls, the executed notebook and
registered models; `logs`,
`status` and `%nb2prod pull` work on the client; the stage cache (the client's) makes a no-change rerun all
`cached`, and `resume` works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # includes starting the remote cluster


def _run(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nb2prod", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _attached_env(cluster: dict) -> dict:
    env = {k: v for k, v in cluster["env"].items() if k != "RAY_API_SERVER_ADDRESS"}
    return {**env, "RAY_AUTH_MODE": "token", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def test_an_attached_run_keeps_everything_on_the_client(tmp_path, remote_cluster, tracking_uri, mlflow_client):
    (tmp_path / "attached_helpers.py").write_text("def total_of(values):\n    return float(values.sum())\n")
    nb = make_notebook(tmp_path / "attached.ipynb", [
        ("scale = 2", ["parameters"]),
        ("import nb2prod\nimport numpy as np\ndata = np.arange(10) * scale\n"
         "(nb2prod.stage_dir() / 'data.txt').write_text(str(data.sum()))\nprint('made data')", ["stage:make"]),
        ("from attached_helpers import total_of", ["stage:helper"]),  # its output: a function of the notebook's module
        ("total = total_of(data)\nprint('total', total)\nimport mlflow\n"  # its own calls: kept, sent back
         "mlflow.log_metric('loss', 0.5, step=1)\nmlflow.log_metric('loss', 0.25, step=2)\n"
         "mlflow.log_param('lr', 0.1)\nmlflow.log_text('hello', 'notes/hello.txt')", ["stage:sum", "metrics"]),
    ])
    env = _attached_env(remote_cluster)
    first = _run(env, "run", str(nb), "--ray-address", remote_cluster["address"], "--json", "--quiet")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout.splitlines()[-1])
    run_id = result["run_id"]
    assert {n: s["status"] for n, s in result["stages"].items()} == {"make": "done", "helper": "done", "sum": "done"}

    parent = mlflow_client.get_run(result["mlflow_run_id"])  # the client's SQLite store
    assert parent.data.tags["nb2prod.status"] == "done" and parent.data.metrics["total"] == 90.0
    assert {a.path for a in mlflow_client.list_artifacts(parent.info.run_id)} >= {"output.ipynb", "pipeline.json"}
    children = mlflow_client.search_runs([parent.info.experiment_id],
                                         f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_stage = {c.data.tags["nb2prod.stage"]: c for c in children}
    assert set(by_stage) == {"make", "helper", "sum"}
    assert "data.txt" in [a.path for a in mlflow_client.list_artifacts(by_stage["make"].info.run_id)]
    summed = by_stage["sum"].info.run_id
    assert [(m.step, m.value) for m in mlflow_client.get_metric_history(summed, "loss")] == [(1, 0.5), (2, 0.25)]
    assert by_stage["sum"].data.params == {"lr": "0.1"}
    assert [a.path for a in mlflow_client.list_artifacts(summed, "notes")] == ["notes/hello.txt"]

    assert "made data" in _run(env, "logs", run_id, "make").stdout
    assert json.loads(_run(env, "status", run_id, "--json").stdout)["status"] == "done"
    from nb2prod.cache import load_stage_outputs  # what `%nb2prod pull` reads: the client's cache

    assert float(load_stage_outputs(run_id, "make")["data"].sum()) == 90.0

    again = _run(env, "run", str(nb), "--ray-address", remote_cluster["address"], "--json", "--quiet")
    assert again.returncode == 0, again.stderr
    assert {s["status"] for s in json.loads(again.stdout.splitlines()[-1])["stages"].values()} == {"cached"}


def _blind(tmp_path: Path) -> str:
    """Stage code (``.format(stage=, resource=)``) that sees none of the client's files, on the node it was placed on."""
    return (f"import os, ray\nassert not any(map(os.path.exists, {[str(tmp_path), os.environ['NB2PROD_HOME']]!r}))\n"
            "{stage}_node = ray.get_runtime_context().get_node_id()\n"
            "assert [n['NodeID'] for n in ray.nodes() if n['Alive'] and n['Resources'].get({resource!r})] == "
            "[{stage}_node]\n")


def test_two_nodes_without_a_shared_disk_cache_and_resume(tmp_path, remote_two_nodes):
    cluster = remote_two_nodes
    flag = Path(f"/tmp/nb2prod-resume-flag-{tmp_path.name}")  # /tmp is shared with the cluster
    blind = _blind(tmp_path)
    nb = make_notebook(tmp_path / "twonodes.ipynb", [
        (blind.format(stage="far", resource="other") + "import numpy as np\nbig = np.ones(200_000)",
         ["stage:far", "resources:other=1"]),
        (blind.format(stage="near", resource="main") + f"assert os.path.exists({str(flag)!r}), 'not yet'\n"
         "total = float(big.sum())\nnodes = sorted({far_node, near_node})", ["stage:near", "resources:main=1"]),
    ])
    env = _attached_env(cluster)
    first = _run(env, "run", str(nb), "--ray-address", cluster["address"], "--json", "--quiet")
    assert first.returncode == 1, first.stderr
    result = json.loads(first.stdout.splitlines()[-1])
    assert result["stages"]["far"]["status"] == "done" and result["stages"]["near"]["status"] == "failed"
    assert "not yet" in result["stages"]["near"]["error"]["message"]  # past its checks: on the head, blind
    flag.write_text("go")
    try:
        resumed = _run(env, "resume", result["run_id"], "--json", "--quiet")
        assert resumed.returncode == 0, resumed.stderr
        record = json.loads(resumed.stdout.splitlines()[-1])
        assert {n: s["status"] for n, s in record["stages"].items()} == {"far": "cached", "near": "done"}
        from nb2prod.cache import load_stage_outputs  # the client's cache, filled through Ray

        near = load_stage_outputs(record["run_id"], "near")
        assert near["total"] == 200_000.0 and len(near["nodes"]) == 2  # the stages ran on both nodes
        again = _run(env, "run", str(nb), "--ray-address", cluster["address"], "--json", "--quiet")
        assert {s["status"] for s in json.loads(again.stdout.splitlines()[-1])["stages"].values()} == {"cached"}
    finally:
        flag.unlink()


def test_a_detached_run_on_two_nodes_and_its_rerun_from_the_heads_cache(tmp_path, remote_two_nodes, mlflow_server):
    """A detached run (a Ray job; its driver and cache on the head) places its stages on both nodes, none of which
    sees the client's files; another user follows it to the end; a no-change rerun is all `cached`."""
    from tests.remote.test_detached import _another_user, _wait_finished

    cluster, blind = remote_two_nodes, _blind(tmp_path)
    nb = make_notebook(tmp_path / "detached2.ipynb", [
        (blind.format(stage="far", resource="other") + "import numpy as np\nbig = np.ones(100_000)",
         ["stage:far", "resources:other=1"]),
        (blind.format(stage="near", resource="main") + "total = float(big.sum())\n"
         "print('total', total, 'on two nodes:', far_node != near_node)", ["stage:near", "resources:main=1"]),
    ])
    env = {**cluster["env"], "MLFLOW_TRACKING_URI": mlflow_server}
    other = _another_user(tmp_path, cluster, mlflow_server)
    statuses = {}
    for _ in range(2):
        proc = _run(env, "run", str(nb), "--detach", "--json")
        assert proc.returncode == 0, proc.stderr
        record = _wait_finished(other, json.loads(proc.stdout)["run_id"])
        assert record["status"] == "done", record
        statuses[record["id"]] = {n: s["status"] for n, s in record["stages"].items()}
    first, again = statuses
    assert list(statuses.values()) == [{"far": "done", "near": "done"}, {"far": "cached", "near": "cached"}]
    assert {first, again} <= {r["id"] for r in json.loads(_run(other, "runs", "--json").stdout)}
    assert "total 100000.0 on two nodes: True" in _run(other, "logs", first, "near").stdout


def test_an_attached_run_registers_its_model_in_the_client_store(tmp_path, remote_cluster, tracking_uri,
                                                                 mlflow_client):
    name = f"remote-{tmp_path.name}"
    nb = make_notebook(tmp_path / "register.ipynb", [
        ("import numpy as np", ["setup"]),
        ("class Doubler:\n    def predict(self, x):\n        return np.asarray(x).sum(axis=1) * 2\nmodel = Doubler()",
         ["stage:fit", f"register:model={name}"]),
    ])
    env = _attached_env(remote_cluster)
    proc = _run(env, "run", str(nb), "--ray-address", remote_cluster["address"], "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(_run(env, "status", json.loads(proc.stdout.splitlines()[-1])["run_id"], "--json").stdout)
    version = mlflow_client.get_model_version(name, "1")  # the client's SQLite store
    assert version.run_id == record["stages"]["fit"]["mlflow_run_id"]
    assert "models/model" in [a.path for a in mlflow_client.list_artifacts(version.run_id, "models")]


def test_an_attached_run_promotes_then_refuses_on_drift_in_the_client_store(example_notebook, remote_cluster,
                                                                            tracking_uri, mlflow_client):
    """Registration, the gate, promotion and the drift check all read and write the client's store through the
    relay (the cluster cannot open it): the example promotes v1, then a shifted run registers v2 and is refused."""
    name = f"remote-wine-{example_notebook.parent.name}"[:60]
    nb = json.loads(example_notebook.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        cell.get("metadata", {})["tags"] = [f"register:best_model={name}" if t.startswith("register:") else t
                                            for t in tags]
    example_notebook.write_text(json.dumps(nb))
    env = _attached_env(remote_cluster)
    common = ["--ray-address", remote_cluster["address"], "--promote", "champion", "--experiment", name,
              "--no-cache", "--json", "--quiet"]
    first = _run(env, "run", str(example_notebook), "--gate", "accuracy>=0.9", *common)
    assert first.returncode == 0, first.stderr
    promoted = json.loads(first.stdout.splitlines()[-1])
    assert promoted["gate"]["status"] == "passed" and promoted["promotion"]["moved"], promoted
    assert str(mlflow_client.get_model_version_by_alias(name, "champion").version) == "1"  # the client's store

    shifted = _run(env, "run", str(example_notebook), "-p", "shift", "3.0", "--gate", "accuracy>=0.1", *common)
    assert shifted.returncode == 0, shifted.stderr
    refused = json.loads(shifted.stdout.splitlines()[-1])
    assert refused["drift"]["drifted"] and refused["drift"]["reference"] == promoted["mlflow_run_id"]
    assert refused["promotion"]["version"] == 2 and not refused["promotion"]["moved"]
    assert str(mlflow_client.get_model_version_by_alias(name, "champion").version) == "1"
    assert "data drifted" in mlflow_client.get_model_version(name, "2").tags["nb2prod.not_promoted"]
    assert mlflow_client.get_run(refused["mlflow_run_id"]).data.metrics["drift.X_test.max_psi"] > 0.2
