"""The MLflow relay of a client-local store, both ends in one process: the coordinator's side (RelayTracker, its
RelayClient for the registration hooks) and the driver's (Replay) on a real SQLite store."""

from __future__ import annotations

import io
import tarfile

import pytest
from mlflow.exceptions import MlflowException

from nb2prod.mlops import registry
from nb2prod.runner.relay import RelayTracker, Replay


@pytest.fixture
def relayed(tmp_path):
    """A RelayTracker whose events the driver's Replay applies (and answers) at once; and that Replay."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    replay = Replay(uri, None, lambda token, outcome: tracker.answer(token, outcome))
    tracker = RelayTracker(uri, lambda **event: replay.handle(event))
    return tracker, replay


def _archive(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_registration_reads_and_files_travel_through_the_relay(relayed, tmp_path):
    tracker, replay = relayed
    experiment = tracker.experiment_id("relayed")
    parent = tracker.start_run(experiment, "nb", {"nb2prod.kind": "pipeline"})
    child = tracker.start_run(experiment, "fit", {"nb2prod.kind": "stage"}, parent=parent)
    assert child.startswith("relay:")  # the coordinator only ever sees placeholders for the runs it created

    assert registry.alias_holder(tracker.client, "relayed-model", "champion") is None  # MLflow's error, rebuilt
    packed = {"archive": _archive({"MLmodel": b"flavors: {}\n", "data/model.pkl": b"\x00model"}),
              "flavor": "python_function"}
    entry = registry.log_and_register(tracker.client, child, "model", "relayed-model", packed, {"nb2prod.stage": "fit"})
    assert entry["version"] == 1 and registry.log_and_register(
        tracker.client, child, "model", "relayed-model", packed, {})["version"] == 2  # the model exists: no error

    client = replay.tracker().client
    version = client.get_model_version("relayed-model", "1")
    assert version.run_id == replay.ids[child] and version.tags["nb2prod.stage"] == "fit"
    logged = {a.path for a in client.list_artifacts(replay.ids[child], "models/model")}
    assert logged == {"models/model/MLmodel", "models/model/data"}
    tracker.client.log_text(child, '{"a": 1}', "profiles/x.json")
    local = tracker.client.download_artifacts(child, "profiles/x.json", str(tmp_path))
    assert open(local).read() == '{"a": 1}'

    with pytest.raises(MlflowException):
        tracker.client.get_run("no-such-run")


def test_stage_codes_own_mlflow_calls_reach_the_clients_store(relayed, tmp_path):
    """A stage's own mlflow calls on a cluster that cannot reach the store: kept in the worker (tracking/stagestore),
    sent back with its result, written on its run through the relay; what needs the store is refused, clearly."""
    from nb2prod.runner.hooks import STAGE_STORE_URI
    from nb2prod.runner.stage import StagePayload, execute

    code = ("import mlflow\nfor step, loss in enumerate([0.5, 0.25]):\n    mlflow.log_metric('loss', loss, step=step)\n"
            "mlflow.log_params({'lr': 0.1, 'depth': 3})\nmlflow.set_tag('team', 'blue')\n"
            "mlflow.log_text('hello', 'notes/hello.txt')\nmlflow.log_dict({'a': 1}, 'conf.json')\n"
            "seen = mlflow.get_run(mlflow.active_run().info.run_id).data")
    payload = StagePayload("r1", "fit", 1, str(tmp_path), [(0, code), (1, "import mlflow\nmlflow.start_run(nested=True)")],
                           outputs=["seen"], mlflow={"tracking_uri": STAGE_STORE_URI, "run_id": "a" * 32})
    meta, outputs = execute(payload, {})
    assert meta["status"] == "failed" and meta["cells"][0]["status"] == "completed"
    assert "needs a tracking server reachable from the cluster" in meta["error"]["message"]
    assert outputs.load() == {} and meta["logged"]["params"] == {"lr": "0.1", "depth": "3"}
    assert [row[::3] for row in meta["logged"]["metrics"]] == [["loss", 0], ["loss", 1]]
    assert set(meta["files"]) == {"notes/hello.txt", "conf.json"}  # artifacts land in the stage's directory

    payload.cells = payload.cells[:1]
    meta, outputs = execute(payload, {})
    assert meta["status"] == "done" and outputs.load()["seen"].metrics == {"loss": 0.25}  # get_run reads what was logged
    tracker, replay = relayed
    child = tracker.start_run(tracker.experiment_id("own-calls"), "fit", {"nb2prod.kind": "stage"})
    tracker.log_recorded(child, meta["logged"])
    client = replay.tracker().client
    run = client.get_run(replay.ids[child])
    assert run.data.params == {"lr": "0.1", "depth": "3"} and run.data.tags["team"] == "blue"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [(0, 0.5), (1, 0.25)]
