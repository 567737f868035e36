"""A run started over REST completes on the session's Ray cluster and lands in MLflow."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.server.conftest import MLFLOW_UI, fetch_json

pytestmark = pytest.mark.usefixtures("ray_cluster")

TERMINAL = {"done", "failed", "cancelled", "interrupted"}


async def wait_for(jp_fetch, run_id, timeout=240):
    deadline = time.monotonic() + timeout
    while True:
        code, record = await fetch_json(jp_fetch, "nb2prod", "runs", run_id)
        assert code == 200, record
        if record["status"] in TERMINAL or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.5)


@pytest.mark.slow  # a whole run through the REST API (~12 s)
async def test_run_completes_with_stage_states_and_mlflow_params(jp_fetch, root, mlflow_client):
    body = {"path": "pipeline.ipynb", "parameters": {"n_estimators": 17, "C": 2}, "experiment": "rest-test",
            "no_cache": True}  # other tests in the session may have cached these stages
    started = time.monotonic()
    code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", method="POST", body=json.dumps(body))
    assert code == 201, answer
    assert time.monotonic() - started < 10  # answers at once; the run goes on in its own process
    run_id = answer["id"]

    record = await wait_for(jp_fetch, run_id)
    assert record["status"] == "done", json.dumps(record, indent=1)
    assert record["path"] == "pipeline.ipynb"
    assert record["origin"] == "server"
    assert set(record["stages"]) == {"load", "split", "train_forest", "train_logreg", "evaluate", "report"}
    for name, stage in record["stages"].items():
        assert stage["status"] == "done", name
        assert stage["attempts"] >= 1 and stage["duration_s"] is not None and stage["error"] is None
    assert record["parameters"]["n_estimators"] == 17
    assert record["mlflow_url"] == (f"{MLFLOW_UI}/#/experiments/{record['mlflow_experiment_id']}"
                                    f"/runs/{record['mlflow_run_id']}")

    mlflow_run = mlflow_client.get_run(record["mlflow_run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["n_estimators"] == "17"
    assert float(mlflow_run.data.params["C"]) == 2.0  # an int is accepted for a float parameter
    assert mlflow_client.get_experiment(mlflow_run.info.experiment_id).name == "rest-test"

    code, runs = await fetch_json(jp_fetch, "nb2prod", "runs", params={"notebook": "pipeline.ipynb"})
    assert code == 200 and runs[0]["id"] == run_id
    code, by_mlflow_id = await fetch_json(jp_fetch, "nb2prod", "runs", record["mlflow_run_id"])
    assert code == 200 and by_mlflow_id["id"] == run_id

    code, cancelled = await fetch_json(jp_fetch, "nb2prod", "runs", run_id, "cancel", method="POST", body="{}")
    assert code == 200 and cancelled["status"] == "done"  # cancelling a finished run changes nothing
