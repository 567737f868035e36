"""Detached runs as Ray jobs on a cluster that cannot see the client's files, tracked in a real MLflow server:
they outlive the submitting process and any client configured for the cluster sees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import committed, make_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # includes starting the remote cluster


def _cli(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nb2prod", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _another_user(tmp_path: Path, cluster: dict, tracking: str) -> dict:
    """A fresh client: another HOME, an empty NB2PROD_HOME, configured only for the cluster and the server as
    docs/cluster.md's step 4 says."""
    home = tmp_path / "other-user"
    (home / "nb2prod").mkdir(parents=True)
    env = {k: v for k, v in cluster["env"].items() if k not in ("NB2PROD_HOME", "MLFLOW_TRACKING_URI")}
    return {**env, "HOME": str(home), "NB2PROD_HOME": str(home / "nb2prod"), "MLFLOW_TRACKING_URI": tracking,
            "RAY_AUTH_MODE": "token"}


def _wait_finished(env: dict, run_id: str, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while True:
        proc = _cli(env, "status", run_id, "--json")
        assert proc.returncode == 0, proc.stderr
        record = json.loads(proc.stdout)
        if record["status"] != "running" or time.time() > deadline:
            return record
        time.sleep(2)


def test_a_detached_run_outlives_its_submitter_and_another_user_sees_it(tmp_path, remote_cluster, mlflow_server):
    nb = make_notebook(tmp_path / "detached.ipynb", [
        ("n = 3", ["parameters"]),
        ("import nb2prod\nvalues = list(range(n))\n(nb2prod.stage_dir() / 'note.txt').write_text('artifact')\n"
         "print('prepared', len(values))", ["stage:prepare"]),
        ("total = sum(values)\nprint('total', total)", ["stage:total", "metrics", "gate:total>=1"]),
    ])
    commit = committed(nb)
    env = {**remote_cluster["env"], "MLFLOW_TRACKING_URI": mlflow_server}
    submitter = subprocess.Popen([sys.executable, "-m", "nb2prod", "run", str(nb), "--detach", "--json", "-p", "n", "5"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = submitter.stdout.readline()
    submitter.send_signal(signal.SIGKILL)  # right after the job was accepted
    submitter.wait()
    accepted = json.loads(line)
    assert accepted["status"] == "running" and accepted["schema_version"] == 1 and "mlflow_run_id" in accepted
    run_id = accepted["run_id"]

    other = _another_user(tmp_path, remote_cluster, mlflow_server)
    record = _wait_finished(other, run_id)
    assert record["status"] == "done", record
    assert {n: s["status"] for n, s in record["stages"].items()} == {"prepare": "done", "total": "done"}
    assert record["mlflow_run_id"] and record["parameters"]["n"] == 5
    assert record["gate"]["status"] == "passed" and record["gate"]["reason"] == "total 10 >= 1"  # as an attached run's

    listed = json.loads(_cli(other, "runs", "--json").stdout)
    assert run_id in [r["id"] for r in listed]
    logs = _cli(other, "logs", run_id)
    assert "prepared 5" in logs.stdout and "total 10" in logs.stdout, logs
    jobs = subprocess.run([str(Path(sys.executable).parent / "ray"), "job", "list"], env=other, capture_output=True,
                          text=True, timeout=120)  # docs/cluster.md step 7 (Ray sends the token in token mode only)
    assert f"nb2prod-{run_id}" in jobs.stdout, jobs.stderr[-2000:]

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    parent = client.get_run(record["mlflow_run_id"])
    assert parent.data.tags["nb2prod.status"] == "done"
    # where the notebook lives is the submitter's path and git state, not the job's copy on the head node
    assert parent.data.tags["nb2prod.notebook"] == str(nb.resolve()) == record["notebook"]
    assert parent.data.tags["mlflow.source.git.commit"] == commit and parent.data.tags["nb2prod.git_dirty"] == "False"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"output.ipynb", "pipeline.json"}
    child = client.get_run(record["stages"]["prepare"]["mlflow_run_id"])
    assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["logs", "note.txt"]

    time.sleep(5)  # a client that first looks at the run later records when it ended, not when it looked
    late = _another_user(tmp_path / "late", remote_cluster, mlflow_server)
    seen = json.loads(_cli(late, "status", run_id, "--json").stdout)
    assert seen["ended_at"] == parent_end_iso(parent) and seen["duration_s"] < record["duration_s"] + 2

    gone = {**_another_user(tmp_path / "gone", remote_cluster, mlflow_server), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    subprocess.run([sys.executable, "-c", "import sys\nfrom nb2prod.runner import detached\nfrom nb2prod.store import runs\n"
                    "assert detached.adopt(sys.argv[1])\nruns.update_run(sys.argv[1], tracking_uri='http://127.0.0.1:9')",
                    run_id], env=gone, check=True, timeout=120)  # a client whose tracking server went away
    refused = _cli(gone, "status", run_id)
    assert refused.returncode == 1 and "cannot read run" in refused.stderr and "Traceback" not in refused.stderr
    listed = _cli(gone, "runs", "--json")
    assert listed.returncode == 0 and [r["status"] for r in json.loads(listed.stdout) if r["id"] == run_id] == ["running"]


def parent_end_iso(parent) -> str:
    """An MLflow run's end time as a run record shows it."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(parent.info.end_time / 1000, timezone.utc).isoformat()


def test_secrets_and_env_values_stay_out_of_the_job(tmp_path, remote_cluster, mlflow_server):
    nb = make_notebook(tmp_path / "secret.ipynb", [
        ("token = 'none'", ["parameters"]),
        ("import os\nassert token == 'p4ssw0rd-value' and os.environ['NB2PROD_TEST_ENV'] == 'env-s3cret'\nok = 1",
         ["stage:use"]),
    ])
    env = {**remote_cluster["env"], "MLFLOW_TRACKING_URI": mlflow_server, "NB2PROD_TEST_ENV": "env-s3cret"}
    proc = _cli(env, "run", str(nb), "--detach", "--json", "-p", "token", "p4ssw0rd-value", "--secret", "token",
                "--env", "NB2PROD_TEST_ENV")
    assert proc.returncode == 0, proc.stderr
    assert "INFO" not in proc.stderr and "package" not in proc.stderr, proc.stderr  # none of Ray's upload chatter
    run_id = json.loads(proc.stdout)["run_id"]
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(remote_cluster["jobs"],
                               headers={"Authorization": f"Bearer {remote_cluster['token'].read_text()}"})
    job = jobs.get_job_info(f"nb2prod-{run_id}")
    shown = json.dumps([job.entrypoint, job.metadata, job.runtime_env])
    assert "p4ssw0rd-value" not in shown and "env-s3cret" not in shown
    assert _wait_finished(env, run_id)["status"] == "done"


def test_cancel_stops_the_job_and_the_run_ends_cancelled(tmp_path, remote_cluster, mlflow_server):
    nb = make_notebook(tmp_path / "slow.ipynb", [
        ("import time\nprint('sleeping', flush=True)\ntime.sleep(600)\nx = 1", ["stage:sleep"]),
    ])
    env = {**remote_cluster["env"], "MLFLOW_TRACKING_URI": mlflow_server}
    run_id = json.loads(_cli(env, "run", str(nb), "--detach", "--json").stdout)["run_id"]
    deadline = time.time() + 240
    while json.loads(_cli(env, "status", run_id, "--json").stdout)["stages"]["sleep"]["status"] != "running":
        assert time.time() < deadline, "the stage never started"
        time.sleep(2)
    assert _cli(env, "cancel", run_id).returncode == 0
    record = _wait_finished(env, run_id, timeout=120)
    assert record["status"] == "cancelled", record
    assert record["stages"]["sleep"]["status"] == "cancelled"


def test_detach_refusals_exit_2(tmp_path, nb2prod_home):
    nb = make_notebook(tmp_path / "nb.ipynb", [("x = 1", ["stage:a"])])
    refusing = _refusing_server()  # as an MLflow 3 server started without --allowed-hosts answers a host name
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    cases = [
        (["--ray-address", "127.0.0.1:6379"], "http"),
        (["--ray-address", "ray://127.0.0.1:10001"], "http"),
        (["--ray-address", "http://127.0.0.1:9", "--output-notebook", str(tmp_path / "o.ipynb")], "--output-notebook"),
        (["--ray-address", "http://127.0.0.1:9", "--log-output"], "--log-output"),
        (["--ray-address", "http://127.0.0.1:9", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"], "MLflow server"),
        (["--ray-address", "http://127.0.0.1:9", "--tracking-uri", str(tmp_path / "mlruns")], "MLflow server"),
        (["--ray-address", "http://127.0.0.1:9", "--tracking-uri", "http://127.0.0.1:9"],
         "cannot reach the MLflow tracking server"),
        (["--ray-address", "http://127.0.0.1:9", "--tracking-uri", f"http://127.0.0.1:{refusing}"], "--allowed-hosts"),
    ]
    for args, said in cases:
        proc = _cli(env, "run", str(nb), "--detach", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert said in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_productionize_with_a_jobs_address_submits_a_job(tmp_path, remote_cluster, mlflow_server, monkeypatch):
    """What the REST endpoint (Productionize) and the scheduler call: `api.start_run` with an http(s) address."""
    from nb2prod import api
    from nb2prod.contracts.options import RunOptions

    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(remote_cluster["token"]))
    nb = make_notebook(tmp_path / "served.ipynb", [("x = 2", ["parameters"]), ("y = x * 21", ["stage:answer"])])
    run_id = api.start_run(nb, RunOptions(ray_address=remote_cluster["jobs"], tracking_uri=mlflow_server,
                                          parameters={"x": 2}), origin="server")
    assert api.get_run(run_id)["status"] == "running"  # its liveness is the job, not this process
    deadline = time.time() + 300
    while (record := api.get_run(run_id))["status"] == "running" and time.time() < deadline:
        time.sleep(2)
    assert record["status"] == "done" and record["stages"]["answer"]["status"] == "done", record
    assert record["origin"] == "server" and record["mlflow_run_id"]



def _refusing_server() -> int:
    """A loopback HTTP server answering every request as MLflow's host check does; returns its port."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = b"Invalid Host header - possible DNS rebinding attack detected"
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def test_a_failed_detached_run_resumes_as_a_job_after_its_directory_changed(tmp_path, remote_cluster, mlflow_server):
    """`nb2prod resume` of a Ray job's run submits a job again (it was refused, an http:// address being no
    address to connect to) and takes the successful stages from the earlier run even though the directory the
    job ships has changed since (the fix that resuming is for)."""
    (tmp_path / "FAIL").write_text("")
    nb = make_notebook(tmp_path / "flaky.ipynb", [
        ("values = list(range(4))\nprint('made')", ["stage:make"]),
        ("import os\nassert not os.path.exists('FAIL'), 'not yet'\ntotal = sum(values)", ["stage:total"]),
    ])
    env = {**remote_cluster["env"], "MLFLOW_TRACKING_URI": mlflow_server}
    jobs_address = env["RAY_API_SERVER_ADDRESS"]
    failed = json.loads(_cli(env, "run", str(nb), "--detach", "--ray-address", jobs_address, "--json").stdout)
    assert _wait_finished(env, failed["run_id"])["status"] == "failed"
    (tmp_path / "FAIL").unlink()  # the directory, and so the shipped package, changes

    resumed = _cli(env, "resume", failed["run_id"], "--json")
    assert resumed.returncode == 0, resumed.stderr
    record = _wait_finished(env, json.loads(resumed.stdout)["run_id"])
    assert record["status"] == "done", record
    assert {n: s["status"] for n, s in record["stages"].items()} == {"make": "cached", "total": "done"}
    assert record["notebook"] == str(nb.resolve())
