"""A detached run whose Ray job is still queued (``PENDING``: no driver yet, nothing in MLflow) as a client that did
not submit it sees it: ``running`` with every stage ``pending``, in `nb2prod runs` and `nb2prod status`. The Jobs
API is a stand-in here (a cluster cannot be made to hold a job back on demand); the tracking store is real."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from tests.conftest import make_notebook


@pytest.fixture
def queued(tmp_path, nb2prod_home, ray_cluster, monkeypatch):
    """A queued job of the cluster at RAY_API_SERVER_ADDRESS; yields its run id. (``ray_cluster``: this process
    joins the embedded cluster first; Ray keeps the first auth token a process loads, and the Jobs client here
    would load none, so later tests of the session could no longer connect.)"""
    from ray.job_submission import JobDetails, JobStatus

    from nb2prod.runner import jobs

    nb = make_notebook(tmp_path / "queued.ipynb", [("n = 1", ["parameters"]), ("a = n", ["stage:first"]),
                                                   ("b = a", ["stage:second"])])
    run_id = "q" + "0" * 11
    job = JobDetails(type="SUBMISSION", submission_id=jobs.submission_id(run_id), status=JobStatus.PENDING,
                     entrypoint="python -m nb2prod run queued.ipynb", start_time=int(time.time() * 1000),
                     metadata={"nb2prod_run_id": run_id, "notebook": str(nb), "experiment": "queued",
                               "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                               "stages": json.dumps(["first", "second"]), "parameters": json.dumps({"n": 1}),
                               "options": json.dumps({})})
    address = "http://127.0.0.1:9"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", address)
    monkeypatch.setattr(jobs, "list_runs", lambda at: [job] if at == address else [])
    monkeypatch.setattr(jobs, "info", lambda at, rid: job if (at, rid) == (address, run_id) else None)
    return run_id


def _cli(*argv: str):
    from nb2prod.cli import cli, runs  # noqa: F401 - registers the commands

    result = CliRunner().invoke(cli, list(argv), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_queued_job_is_running_with_every_stage_pending(queued):
    listed = {r["id"]: r for r in json.loads(_cli("runs", "--json"))}
    assert listed[queued]["status"] == "running"
    record = json.loads(_cli("status", queued, "--json"))
    assert record["status"] == "running" and record["mlflow_run_id"] is None and record["ended_at"] is None
    assert {n: s["status"] for n, s in record["stages"].items()} == {"first": "pending", "second": "pending"}
    assert queued in _cli("runs") and "pending" in _cli("status", queued)
