"""A "remote" Ray cluster on this machine that cannot see the client's files, and a real MLflow server.

The cluster's processes run in a private mount namespace (``unshare -m``) with an empty tmpfs mounted over
pytest's base temp dir, which holds everything the client writes (its NB2PROD_HOME, its SQLite MLflow store,
every test's notebook directory). ``/tmp`` itself stays shared (Ray's session sockets). Token auth is on and the
dashboard (Ray's Jobs API) listens on 127.0.0.1. ``remote_two_nodes`` is a cluster of its own whose second
node (resource ``other``) joins the same way. Nodes are stopped by their process groups, SIGKILL following SIGTERM
(Ray's DashboardAgent and RuntimeEnvAgent ignore SIGTERM).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from tests.conftest import free_port
from tests.procs import kill_named, stop_group

START_TIMEOUT_S = 420  # ray start --head with its dashboard, or a job's first runtime env, on a loaded machine


def _get(url: str, token: str | None = None, timeout: float = 5) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def _stop(proc: subprocess.Popen, marker: str) -> None:
    """Stop a node: its process group (SIGTERM, then SIGKILL), then anything left that names its temp dir."""
    stop_group(proc, grace_s=10)
    kill_named(marker)




class Node:
    """One ``ray start --block`` in its own mount namespace and process group."""

    def __init__(self, hidden: Path, env: dict[str, str], args: list[str], log: Path, marker: str) -> None:
        ray_start = [sys.executable, "-m", "nb2prod.runner.raystart", "start", "--block", "--node-ip-address=127.0.0.1",
                     "--disable-usage-stats", f"--temp-dir={marker}", *args]
        script = f"mount -t tmpfs tmpfs {hidden} && exec {' '.join(shlex.quote(a) for a in ray_start)}"
        self.marker = marker
        self.log = log
        with open(log, "w") as out:
            # started at a higher priority (Ray's raylet gives its agents 15 s to report their ports, which a
            # loaded machine misses), back to normal once up (see ``normal_priority``)
            self.proc = subprocess.Popen(["nice", "-n", "-20", "unshare", "-m", "sh", "-c", script], env=env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def normal_priority(self) -> None:
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == self.proc.pid:
                    proc.nice(0)
            except (psutil.Error, OSError):
                pass

    def stop(self) -> None:
        _stop(self.proc, self.marker)


def _wait(check, node: Node, what: str) -> None:
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if node.proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {node.log.read_text()[-3000:]}")
        try:
            if check():
                return
        except (OSError, ValueError, KeyError):  # not listening yet, or answering before it is ready
            pass
        time.sleep(1)
    raise RuntimeError(f"{what} did not come up in {START_TIMEOUT_S}s: {node.log.read_text()[-3000:]}")


@contextmanager
def _head(nb2prod_home: Path, hidden: Path, own: Path, multi_node: bool) -> Iterator[dict]:
    """A head node that cannot see ``hidden``, its files under ``own``; yields its addresses, token and envs.

    ``env`` is the environment of a client of this cluster: RAY_API_SERVER_ADDRESS set, token by path. Ray refuses a
    second node on a loopback-only head, so a ``multi_node`` head runs with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 (its
    sockets not limited to 127.0.0.1, as in tests/cluster/test_two_nodes.py) and gets the resource ``main``."""
    shutil.rmtree(own, ignore_errors=True)
    (own / "home").mkdir(parents=True, mode=0o700)
    token = own / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "HOME": str(own / "home"), "NB2PROD_HOME": str(own / "home" / "nb2prod"),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1" if multi_node else "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token), "RAY_JOB_STOP_WAIT_TIME_S": "15",
           "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "300"}
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    head_args = ["--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
                 f"--system-config={json.dumps({'enable_worker_prestart': False})}",
                 *(['--resources={"main": 1}'] if multi_node else [])]
    url = f"http://127.0.0.1:{dashboard}"
    client_env = {**os.environ, "RAY_API_SERVER_ADDRESS": url, "RAY_AUTH_TOKEN_PATH": str(token)}
    client_env.pop("RAY_AUTH_MODE", None)
    info = {"address": f"127.0.0.1:{port}", "jobs": url, "token": token, "env": client_env, "cluster_env": env,
            "hidden": hidden, "own": own, "nodes": []}
    try:
        add_node(info, "head", head_args)
        _assert_hidden(info, nb2prod_home)
        yield info
    finally:
        for node in reversed(info["nodes"]):
            node.stop()
        shutil.rmtree(own, ignore_errors=True)


def add_node(cluster: dict, name: str, args: list[str]) -> None:
    """Start the node ``name`` of ``cluster`` in its own mount namespace (again, up to 3 times: a raylet that timed
    out waiting for its agents) and wait until it is ALIVE."""
    from nb2prod.runner.cluster import agent_ports

    own, secret, alive = cluster["own"], cluster["token"].read_text(), len(cluster["nodes"]) + 1
    args = [*args, *agent_ports(), f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]
    for attempt in range(3):
        node = Node(cluster["hidden"], cluster["cluster_env"], args, own / f"{name}-{attempt}.log", str(own / name))
        try:
            _wait(lambda: _alive_nodes(cluster["jobs"], secret) >= alive, node, f"the remote {name} node")
        except RuntimeError:
            node.stop()
            if attempt == 2:
                raise
            continue
        node.normal_priority()
        cluster["nodes"].append(node)
        return


@pytest.fixture(scope="session")
def remote_cluster(nb2prod_home, tmp_path_factory):
    """A one-node remote cluster, loopback only, that cannot see pytest's base temp dir (see :func:`_head`)."""
    own = Path(f"/tmp/nb2prod-rc-{os.getpid()}")  # outside what is hidden; short (Ray's socket paths)
    with _head(nb2prod_home, tmp_path_factory.getbasetemp(), own, multi_node=False) as info:
        yield info


@pytest.fixture(scope="module")
def remote_two_nodes(nb2prod_home, tmp_path_factory):
    """A two-node remote cluster of its own: the head (resource ``main``) and a second node (resource ``other``),
    each with its own empty view of pytest's base temp dir."""
    own = Path(f"/tmp/nb2prod-r2-{os.getpid()}")
    with _head(nb2prod_home, tmp_path_factory.getbasetemp(), own, multi_node=True) as info:
        add_node(info, "second", [f"--address={info['address']}", "--num-cpus=1", '--resources={"other": 1}'])
        yield info


def _alive_nodes(url: str, token: str) -> int:
    nodes = json.loads(_get(f"{url}/nodes?view=summary", token))["data"]["summary"]
    return sum(1 for n in nodes if n["raylet"]["state"] == "ALIVE")


def _assert_hidden(info: dict, nb2prod_home: Path) -> None:
    """The cluster must really not see the client's files: a job and a Ray task of it look for one."""
    probe = nb2prod_home / "client-only-probe"
    probe.write_text("the client's file")
    code = ("import os, ray; ray.init(); p = {p!r}; "
            "seen = [os.path.exists(p), ray.get(ray.remote(lambda: os.path.exists(p)).remote())]; "
            "print('SEEN', seen); assert seen == [False, False], seen").format(p=str(probe))
    from ray.job_submission import JobStatus, JobSubmissionClient

    jobs = JobSubmissionClient(info["jobs"], headers={"Authorization": f"Bearer {info['token'].read_text()}"})
    deadline = time.time() + START_TIMEOUT_S
    while True:  # the head's dashboard agent registers a while after the dashboard answers
        try:
            job = jobs.submit_job(entrypoint=f"{sys.executable} -c {shlex.quote(code)}")
            break
        except Exception:  # noqa: BLE001 - "No available agent", or a dashboard still busy starting its modules
            if time.time() > deadline:
                raise
            time.sleep(2)
    deadline = time.time() + START_TIMEOUT_S
    while not jobs.get_job_status(job).is_terminal() and time.time() < deadline:
        time.sleep(1)
    assert jobs.get_job_status(job) == JobStatus.SUCCEEDED, jobs.get_job_logs(job)
    assert "SEEN [False, False]" in jobs.get_job_logs(job)
