"""Secret parameters are stored nowhere and shown nowhere, and still reach the stages: inline values (``-p`` +
``--secret NAME``) of detached runs travel in the runner's environment, environment references
(``--secret NAME=ENV_VAR``) are resolved at each start (runs, resumes, schedule fires, notebook mode)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from datetime import datetime

import pytest

from nb2prod import api, secret
from nb2prod.contracts import RunOptions
from nb2prod.errors import ParameterError, UsageError
from nb2prod.scheduling import notify, schedules
from nb2prod.scheduling.service import Scheduler
from nb2prod.store import runs as store
from tests.conftest import make_notebook, run_cli
from tests.scheduling.test_e2e import drain, missed_once, no_leftover_schedules  # noqa: F401 - autouse fixture

VALUE = "s3cr3t-Value-42"


@pytest.fixture
def secret_nb(tmp_path):
    return make_notebook(tmp_path / "secret.ipynb", [
        ("token = 'default'\nn = 1", ["parameters"]),
        # the value reversed: the notebook's own source must not contain the secret
        ("assert token[::-1] == '24-eulaV-t3rc3s', 'the stage did not get the secret'\nprint('token is', token)\n"
         "out = n + 1", ["stage:use"])])


def wait_run(run_id, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        record = store.get_run(run_id)
        if record["status"] != "running":
            return record
        time.sleep(0.5)
    raise AssertionError(store.get_run(run_id))


def files_holding(nb2prod_home, text: str) -> list[str]:
    """Every file under NB2PROD_HOME (Ray's session files aside) that holds ``text``. Read by another process:
    opening and closing the run store's files here would drop this process's SQLite locks on them (POSIX
    locks belong to the process), and its next query would fail with "disk I/O error"."""
    found = subprocess.run(["grep", "-rlaF", "--exclude-dir=ray", text, str(nb2prod_home)],
                           capture_output=True, text=True)
    assert found.returncode in (0, 1), found.stderr
    return found.stdout.splitlines()


def test_a_detached_run_gets_its_inline_secret_and_writes_it_nowhere(ray_cluster, secret_nb, nb2prod_home):
    run_id = api.start_run(secret_nb, RunOptions(parameters={"token": VALUE}, secrets=["token"]))
    options_file = nb2prod_home / "runs" / run_id / "options.json"
    assert VALUE not in options_file.read_text() and stat.S_IMODE(options_file.stat().st_mode) == 0o600
    record = wait_run(run_id)
    assert record["status"] == "done", record["error"] or record["stages"]
    assert record["parameters"]["token"] == "***" and record["options"]["parameters"]["token"] == "***"
    assert VALUE not in json.dumps(record) and files_holding(nb2prod_home, VALUE) == []


@pytest.mark.slow  # two scheduler runs (~10 s)
def test_resume_asks_again_for_an_inline_secret_and_rereads_a_reference(ray_cluster, secret_nb, monkeypatch):
    first = run_cli("run", str(secret_nb), "-p", "token", VALUE, "--secret", "token", "--json", "--quiet")
    assert first.returncode == 0, first.stderr
    resumed = run_cli("resume", json.loads(first.stdout)["run_id"], "--quiet")
    assert resumed.returncode == 2 and "secret parameter 'token' has no value" in resumed.stderr
    monkeypatch.setenv("NB2PROD_TEST_TOKEN", "not-the-value")  # the stage fails: a run to resume
    first = run_cli("run", str(secret_nb), "--secret", "token=NB2PROD_TEST_TOKEN", "--json", "--quiet")
    assert first.returncode == 1 and "did not get the secret" in first.stdout, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    assert store.get_run(run_id)["options"]["secrets"] == ["token=NB2PROD_TEST_TOKEN"]
    monkeypatch.setenv("NB2PROD_TEST_TOKEN", VALUE)  # each resume reads the variable again
    for args in (("resume", run_id), ("run", str(secret_nb), "--resume", run_id)):
        resumed = run_cli(*args, "--quiet")
        assert resumed.returncode == 0, resumed.stderr
    monkeypatch.delenv("NB2PROD_TEST_TOKEN")
    resumed = run_cli("resume", run_id, "--quiet")
    assert resumed.returncode == 2 and "environment variable NB2PROD_TEST_TOKEN is not set" in resumed.stderr


def test_a_type_error_does_not_echo_a_secret(secret_nb):
    with pytest.raises(ParameterError) as exc:
        api.prepare(secret_nb, RunOptions(parameters={"token": 98765}, secrets=["token"]))
    assert "98765" not in exc.value.message and "secret parameter 'token' expects str" in exc.value.message


def test_schedules_store_references_never_values(secret_nb, monkeypatch):
    with pytest.raises(UsageError, match="a schedule stores no secret values"):
        schedules.add("leaky", str(secret_nb), "@daily", parameters={"token": VALUE}, options={"secrets": ["token"]})
    row = schedules.add("ref", str(secret_nb), "@daily", options={"secrets": ["token=NB2PROD_TEST_TOKEN"]})
    assert row["options"]["secrets"] == ["token=NB2PROD_TEST_TOKEN"] and "token" not in row["parameters"]
    listed = run_cli("schedule", "show", "ref", "--json")
    assert listed.returncode == 0 and VALUE not in listed.stdout


def test_rows_stored_with_a_secret_value_show_it_masked(secret_nb):
    from nb2prod.scheduling.models import ScheduleRow
    from nb2prod.store.db import session

    t = datetime(2026, 1, 1)
    with session() as s, s.begin():  # what an older nb2prod stored
        s.add(ScheduleRow(name="old-secret", notebook=str(secret_nb), cron="@daily", timezone="UTC",
                          parameters={"token": VALUE, "n": "2"}, options={"secrets": ["token"]}, created_at=t,
                          considered_until=t, next_fire_at=t))
    shown = schedules.show("old-secret")
    assert shown["parameters"] == {"token": "***", "n": "2"}
    assert VALUE not in json.dumps(schedules.list_all())


@pytest.mark.slow  # a scheduler fire in notebook mode (~9 s)
def test_notebook_mode_fires_with_the_secret_and_logs_it_nowhere(secret_nb, monkeypatch, mlflow_client):
    monkeypatch.setenv("NB2PROD_TEST_TOKEN", VALUE)
    cron, created = missed_once()
    schedules.add("nbmode", str(secret_nb), cron, mode="notebook", catchup="latest", now=created,
                  options={"secrets": ["token=NB2PROD_TEST_TOKEN"]})
    fire = next(f for f in drain(Scheduler(), "nbmode", timeout=180) if f.status != "skipped")
    assert fire.status == "done", fire.error
    run = mlflow_client.get_run(fire.mlflow_run_id)
    assert run.data.params["token"] == "***"
    output = open(mlflow_client.download_artifacts(run.info.run_id, "output.ipynb")).read()
    assert VALUE not in output and "token is ***" in output
    assert output.count("***") >= 2  # the injected cell and papermill's metadata


def test_the_cluster_gets_only_what_ray_needs(ray_cluster):
    import ray

    @ray.remote
    def environment():
        return dict(os.environ)

    seen = ray.get(environment.remote())
    assert "CANARY_SECRET_NOT_FOR_RAY" not in seen
    assert seen.get("PATH") and seen.get("NB2PROD_HOME") == os.environ["NB2PROD_HOME"]


def test_webhooks_and_records_get_tracking_uris_without_credentials():
    run_id = store.new_run_id()
    store.create_run(run_id, "/x/nb.ipynb", {"a": None}, parameters={}, options={}, origin="test")
    store.update_run(run_id, tracking_uri="https://alice:hunter2@mlflow.example/?token=abc&x=1",
                     mlflow_run_id="m1", mlflow_experiment_id="3")
    link = notify.mlflow_link(run_id, "m1")
    assert link and "hunter2" not in link and "alice" not in link and "mlflow.example" in link
    assert api.get_run(run_id)["tracking_uri"] == "https://mlflow.example/?token=***&x=1"
    assert secret.redact_uri("postgresql://u:pw@db:5432/ml?sslpassword=x") == "postgresql://db:5432/ml?sslpassword=***"
    assert secret.redact_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
