"""A cluster other than the embedded one is asked what it sees (``runner.relay.narrow``): one that reads the
client's directories (on this machine, or mounting them) writes the tracking store and the cache itself, as the
embedded one does; one that cannot (tests/remote: a mount namespace) gets them relayed."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from nb2prod import cache
from nb2prod.runner.relay import narrow, seen_probes
from tests.conftest import make_notebook


def test_a_probe_is_seen_only_with_its_token(tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.write_text("a" * 32)
    other.write_text("b" * 32)
    assert seen_probes([str(mine), str(other), str(tmp_path / "missing")], "a" * 32) == [str(mine)]


def test_the_embedded_coordinator_sees_the_clients_store_and_cache(ray_cluster, nb2prod_home, tmp_path):
    from nb2prod.runner.coordinator import get_coordinator

    directory = cache.cache_dir(str(tmp_path / "cache"))
    request = SimpleNamespace(relay_tracking=True, relay_cache=True, cache_dir=str(directory),
                              tracking_uri=f"sqlite:///{nb2prod_home / 'mlflow.db'}")
    narrow(request, get_coordinator(embedded=True))
    assert not request.relay_tracking and not request.relay_cache
    assert sorted(p.name for p in directory.iterdir()) == [cache.TAG]  # the probe is gone
    assert sorted(p.name for p in nb2prod_home.iterdir() if p.name.startswith(".nb2prod-probe")) == []
    relative = SimpleNamespace(relay_tracking=True, relay_cache=False, cache_dir=None, tracking_uri="sqlite:///x.db")
    narrow(relative, get_coordinator(embedded=True))  # a relative path is resolved elsewhere by the cluster
    assert relative.relay_tracking


@pytest.mark.slow
def test_a_ray_start_cluster_on_this_machine_writes_the_clients_store_itself(ray_start_cluster, tmp_path):
    """Measured: relaying a client-local store cost every run on such a cluster ~3 s of importing MLflow in
    the client (a one-stage run 4.6 s against 1.7 s on the embedded cluster)."""
    nb = make_notebook(tmp_path / "shared.ipynb", [("x = 1", ["stage:s0"]), ("y = x + 1", ["stage:s1"])])
    script = ("import json, sys\nfrom nb2prod import api\nfrom nb2prod.contracts import RunOptions\n"
              f"record = api.run({str(nb)!r}, RunOptions())\n"
              "print(json.dumps({'status': record['status'], 'mlflow_in_client': 'mlflow' in sys.modules, "
              "'mlflow_run_id': record['mlflow_run_id']}))\n")
    home = tmp_path / "home"  # its own: no interrupted run of another test for the run's end to close in MLflow
    env = {**ray_start_cluster["env"], "RAY_ADDRESS": ray_start_cluster["address"], "NB2PROD_HOME": str(home),
           "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                      check=True, timeout=240).stdout.splitlines()[-1]) for _ in range(2)]
    assert [r["status"] for r in runs] == ["done", "done"]
    assert not any(r["mlflow_in_client"] for r in runs)
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert client.get_run(runs[0]["mlflow_run_id"]).info.status == "FINISHED"
    stages = client.search_runs([client.get_run(runs[0]["mlflow_run_id"]).info.experiment_id],
                                f"tags.mlflow.parentRunId = '{runs[0]['mlflow_run_id']}'")
    assert sorted(r.info.run_name for r in stages) == ["s0", "s1"]
