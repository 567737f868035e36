"""A "remote" Ray cluster on this machine that cannot see the client's files, and a real MLflow server.

The cluster's processes run in a private mount namespace (``unshare -m``) with an empty tmpfs mounted over
pytest's base temp dir, which holds everything the client writes (its NB2PROD_HOME, its SQLite MLflow store,
every test's notebook directory). ``/tmp`` itself stays shared (Ray's session sockets). Token auth is on and the
dashboard (Ray's Jobs API) listens on 127.0.0.1. A second node joins the same way (``remote_second_node``,
resource ``other``). Both are stopped by their process groups, SIGKILL following SIGTERM (Ray's DashboardAgent
and RuntimeEnvAgent ignore SIGTERM).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

START_TIMEOUT_S = 420  # ray start --head with its dashboard, or a job's first runtime env, on a loaded machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None, timeout: float = 5) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def _stop(proc: subprocess.Popen, marker: str) -> None:
    """Stop a node: its process group (SIGTERM, then SIGKILL), then anything left that names its temp dir."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    for leftover in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in leftover.info["cmdline"] or []):
                leftover.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass




class Node:
    """One ``ray start --block`` in its own mount namespace and process group."""

    def __init__(self, hidden: Path, env: dict[str, str], args: list[str], log: Path, marker: str) -> None:
        ray_start = [sys.executable, "-m", "nb2prod.runner.raystart", "start", "--block", "--node-ip-address=127.0.0.1",
                     "--disable-usage-stats", f"--temp-dir={marker}", *args]
        script = f"mount -t tmpfs tmpfs {hidden} && exec {' '.join(_quote(a) for a in ray_start)}"
        self.marker = marker
        self.log = log
        with open(log, "w") as out:
            # started at a higher priority (Ray's raylet gives its agents 15 s to report their ports, which a
            # loaded machine misses), back to normal once up (see ``normal_priority``)
            self.proc = subprocess.Popen(["nice", "-n", "-20", "unshare", "-m", "sh", "-c", script], env=env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def normal_priority(self) -> None:
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == self.proc.pid:
                    proc.nice(0)
            except (psutil.Error, OSError):
                pass

    def stop(self) -> None:
        _stop(self.proc, self.marker)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


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


@pytest.fixture(scope="session")
def remote_cluster(nb2prod_home, tmp_path_factory):
    """A head node that cannot see pytest's base temp dir; yields its addresses, token and a client env.

    ``env`` is the environment of a client of this cluster: RAY_API_SERVER_ADDRESS set, token by path."""
    hidden = tmp_path_factory.getbasetemp()
    own = Path(f"/tmp/nb2prod-rc-{os.getpid()}")  # outside what is hidden; short (Ray's socket paths)
    shutil.rmtree(own, ignore_errors=True)
    (own / "home").mkdir(parents=True, mode=0o700)
    token = own / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "HOME": str(own / "home"), "NB2PROD_HOME": str(own / "home" / "nb2prod"),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_JOB_STOP_WAIT_TIME_S": "15",
           "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "300"}
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    head_args = ["--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}", *_node_ports(),
                 f"--system-config={json.dumps({'enable_worker_prestart': False})}"]
    url = f"http://127.0.0.1:{dashboard}"
    secret = token.read_text()
    nodes: list[Node] = []
    try:
        for attempt in range(3):  # a raylet that timed out waiting for its agents: start again
            head = Node(hidden, env, head_args, own / f"head-{attempt}.log", str(own / "ray"))
            nodes.append(head)
            try:
                _wait(lambda: _alive_nodes(url, secret) >= 1, head, "the remote head node")
                head.normal_priority()
                break
            except RuntimeError:
                head.stop()
                if attempt == 2:
                    raise
        client_env = {**os.environ, "RAY_API_SERVER_ADDRESS": url, "RAY_AUTH_TOKEN_PATH": str(token)}
        client_env.pop("RAY_AUTH_MODE", None)
        info = {"address": f"127.0.0.1:{port}", "jobs": url, "token": token, "env": client_env, "cluster_env": env,
                "hidden": hidden, "own": own, "nodes": nodes}
        _assert_hidden(info, nb2prod_home)
        yield info
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(scope="session")
def remote_second_node(remote_cluster):
    """A second node of the remote cluster (resource ``other``), with its own empty view of the hidden dir."""
    own = remote_cluster["own"]
    node = Node(remote_cluster["hidden"], remote_cluster["cluster_env"],
                [f"--address={remote_cluster['address']}", "--num-cpus=1", '--resources={"other": 1}', *_node_ports()],
                own / "second.log", str(own / "ray2"))
    remote_cluster["nodes"].append(node)
    url, secret = remote_cluster["jobs"], remote_cluster["token"].read_text()

    _wait(lambda: _alive_nodes(url, secret) >= 2, node, "the remote second node")
    node.normal_priority()
    yield remote_cluster


def _node_ports() -> list[str]:
    """Every port of a node's processes chosen up front: a raylet waiting for its agents to report the ports they
    picked gives up after a few seconds on a loaded machine."""
    names = ("node-manager-port", "object-manager-port", "dashboard-agent-grpc-port", "dashboard-agent-listen-port",
             "runtime-env-agent-port", "metrics-export-port")
    return [f"--{name}={free_port()}" for name in names]


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
            job = jobs.submit_job(entrypoint=f"{sys.executable} -c {_quote(code)}")
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


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied artifacts); yields its URL."""
    directory = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(directory / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{directory / 'mlflow.db'}",
                             "--artifacts-destination", str(directory / "artifacts"), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + START_TIMEOUT_S
        while True:
            try:
                if _get(f"{url}/health") == b"OK":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(directory / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=10)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
