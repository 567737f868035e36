"""Detached runs as Ray jobs, through Ray's Jobs API (the dashboard's ``http(s)://`` address).

``submit`` sends a run as job ``nb2prod-<run_id>``: its entrypoint is ``nb2prod run NB --job-package URI`` and
its ``runtime_env`` ships the notebook's directory. The run's options, secret parameter values and ``--env``
values travel in a separate package uploaded to the cluster (``URI``, content-addressed, unguessable), never in
the job's entrypoint, metadata or ``runtime_env`` (the dashboard and ``ray job list`` show those three); the job
reads the package (:func:`accept`) and deletes it, then runs the pipeline as ``nb2prod run`` does, so the run goes
on when the submitting process is gone.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import shlex
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from nb2prod.errors import Nb2ProdError, UsageError

PREFIX = "nb2prod-"
AGENT_WAIT_S = 30.0
TRACKING_CHECK_S = 10.0  # the tracking server answers a detached run's submitter within this


def is_jobs_address(address: str | None) -> bool:
    """Whether ``address`` is a Jobs API (dashboard) address."""
    return bool(address) and address.startswith(("http://", "https://"))


def detach_address(address: str | None) -> str | None:
    """The cluster address a detached run goes to: ``address``, else ``RAY_API_SERVER_ADDRESS``, else
    ``RAY_ADDRESS``; None means a local detached process."""
    return address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or None


def submission_id(run_id: str) -> str:
    return f"{PREFIX}{run_id}"


def check_tracking_uri(uri: str) -> None:
    """A detached run's tracking store must be reachable from the cluster: refuse client-local stores, and a
    tracking server that does not answer this client (which follows the run through it)."""
    from nb2prod.tracking import is_local

    if is_local(uri):
        raise UsageError(f"a detached run on a Ray cluster writes MLflow from the cluster, which cannot reach the "
                         f"tracking store {uri} on this machine; set --tracking-uri (or MLFLOW_TRACKING_URI) to an "
                         "MLflow server (http(s)://HOST:PORT) or a database URI the cluster can reach")
    if uri.startswith(("http://", "https://")):
        _ask_tracking_server(uri)


def _ask_tracking_server(uri: str) -> None:
    """One cheap request to the MLflow server, with MLflow's credentials and TLS settings from the environment,
    so that a server that is down or refuses us fails the submit, not the job seconds later."""
    import requests

    from nb2prod.secret import redact_uri

    headers, auth = {}, None
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
        auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    verify = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() != "true" and \
        (os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True)
    shown = redact_uri(uri)
    try:
        answer = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                              headers=headers, auth=auth, verify=verify, timeout=TRACKING_CHECK_S)
    except requests.RequestException as exc:
        raise UsageError(f"cannot reach the MLflow tracking server {shown}: {str(exc).splitlines()[0]}; start it, "
                         "or set --tracking-uri (or MLFLOW_TRACKING_URI) to a server this machine and the cluster "
                         "both reach") from None
    if answer.status_code >= 400:
        hint = " (an MLflow server accepts only the host names it is told: start it with --allowed-hosts " \
               "HOST,HOST:PORT)" if "Host header" in answer.text else ""
        raise UsageError(f"the MLflow tracking server {shown} refused this client: HTTP {answer.status_code} "
                         f"{answer.text.strip()[:200]}{hint}")


def auth_headers() -> dict[str, str]:
    """Ray's token as an HTTP header when one is configured (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``,
    ``~/.ray/auth_token``); none for a cluster without auth."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), str(Path.home() / ".ray" / "auth_token")):
            if path and Path(path).is_file():
                token = Path(path).read_text().strip()
                break
    return {"Authorization": f"Bearer {token}"} if token else {}


def client(address: str):
    """A Jobs API client for ``address`` (token sent when configured)."""
    import requests
    from ray.job_submission import JobSubmissionClient

    for name in ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk",
                 "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no INFO lines on each upload or connection
    try:
        return JobSubmissionClient(address, headers=auth_headers())
    except (ConnectionError, RuntimeError, ValueError, requests.RequestException) as exc:
        raise _unreachable(address, exc) from None


def _unreachable(address: str, exc: Exception) -> Nb2ProdError:
    return Nb2ProdError(f"cannot reach Ray's Jobs API at {address}: {str(exc).splitlines()[0]} (is the cluster's "
                        "dashboard up, and RAY_AUTH_TOKEN_PATH set when it requires a token?)")


def submit(address: str, run_id: str, notebook: Path, options: dict[str, Any], env: dict[str, str],
           runtime_env: dict[str, Any], metadata: dict[str, str], origin: str, source: dict[str, str]) -> str:
    """Submit the run as job ``nb2prod-<run_id>``; returns the submission id once the cluster accepted it.
    ``source``: the notebook's path and git state here (``tracking.source_tags``), for the run's MLflow tags."""
    jobs = client(address)
    payload = {"run_id": run_id, "options": options, "env": env, "source": source,
               "nonce": secrets.token_hex(16)}  # the nonce makes the package's content address unguessable
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "job.zip"
        with zipfile.ZipFile(package, "w") as zf:
            zf.writestr("job.json", json.dumps(payload))
        uri = jobs._upload_package_if_needed(str(package), include_gitignore=False, is_file=True)
    entrypoint = (f"{sys.executable} -m nb2prod run {shlex.quote(notebook.name)} --job-package {uri} --run-id {run_id} "
                  f"--origin {shlex.quote(origin)} --json --quiet")
    import requests

    deadline = time.time() + AGENT_WAIT_S
    while True:
        try:
            return jobs.submit_job(entrypoint=entrypoint, submission_id=submission_id(run_id), runtime_env=runtime_env,
                                   metadata={"nb2prod_run_id": run_id, **metadata})
        except requests.RequestException as exc:
            raise _unreachable(address, exc) from None
        except RuntimeError as exc:
            if "No available agent" in str(exc) and time.time() < deadline:
                time.sleep(1)  # a cluster that just started: its head node's agent registers a little later
                continue
            raise Nb2ProdError(f"the Ray cluster at {address} refused the run's job: "
                               f"{str(exc).splitlines()[0]}") from None


def info(address: str, run_id: str):
    """The job of a detached run (``JobDetails``), or None when the cluster does not know it."""
    import requests

    try:
        return client(address).get_job_info(submission_id(run_id))
    except RuntimeError:
        return None
    except requests.RequestException as exc:
        raise _unreachable(address, exc) from None


def list_runs(address: str) -> list[Any]:
    """Every nb2prod job the cluster knows (``JobDetails``)."""
    import requests

    try:
        jobs = client(address).list_jobs()
    except (RuntimeError, requests.RequestException) as exc:
        raise _unreachable(address, exc) from None
    return [job for job in jobs if (job.submission_id or "").startswith(PREFIX)]


def stop(address: str, run_id: str) -> bool:
    """Stop the run's job (its driver cancels the running stages); False when it had already ended."""
    import requests

    try:
        return client(address).stop_job(submission_id(run_id))
    except (RuntimeError, requests.RequestException) as exc:
        raise _unreachable(address, exc) from None


def accept(uri: str) -> dict[str, Any]:
    """In the job's driver: connect to the job's cluster, read the run's package (then delete it from the
    cluster), put its ``--env`` values in this process's environment; returns the package."""
    from nb2prod.runner.cluster import connect

    connect()  # RAY_ADDRESS: the job's own cluster
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get

    data = _internal_kv_get(uri)
    if data is None:
        raise Nb2ProdError(f"the run's package {uri} is gone from the cluster (a job that waited too long to start?)")
    _internal_kv_del(uri)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        payload = json.loads(zf.read("job.json"))
    os.environ.update(payload["env"])
    return payload
