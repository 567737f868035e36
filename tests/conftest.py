"""Session-wide real components: one local Ray cluster (num_cpus=2), a temp NB2PROD_HOME and a
temp SQLite MLflow store. Subprocesses (the CLI, Jupyter servers, schedulers) inherit the env."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.procs import stop_group

# Ray reads this when imported: set it before any test module imports ray (see nb2prod.runner.cluster).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# A variable of the process that starts the session's cluster which the cluster must not get (only what Ray needs).
os.environ["CANARY_SECRET_NOT_FOR_RAY"] = "canary"

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_SERVER_START_S = 420  # on a loaded machine
EXAMPLE = ROOT / "example_notebooks" / "pipeline.ipynb"


@pytest.fixture(scope="session", autouse=True)
def nb2prod_home(tmp_path_factory) -> Iterator[Path]:
    """A temp NB2PROD_HOME and MLflow store for the whole session (set in os.environ; for every test, so that none
    writes the user's own); the embedded cluster a test's ``nb2prod`` subprocess started for it is stopped at the
    end (with or without :func:`ray_cluster`)."""
    home = tmp_path_factory.mktemp("nb2prod-home")
    os.environ["NB2PROD_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ.pop("RAY_ADDRESS", None)
    yield home
    from nb2prod.runner import cluster

    os.environ["NB2PROD_HOME"] = str(home)
    cluster.stop()


@pytest.fixture(scope="session")
def ray_cluster(nb2prod_home):
    """nb2prod's embedded loopback cluster with 2 CPUs; ``nb2prod run`` subprocesses find it via NB2PROD_HOME."""
    from nb2prod.runner import cluster

    address = cluster.start(num_cpus=2)
    try:  # stop the cluster even when connecting fails: never leak one
        cluster.connect()
        yield address
    finally:
        import ray

        ray.shutdown()
        cluster.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ray_start(log_dir: Path) -> Iterator[dict]:
    """A cluster started the way users start theirs (`ray start --head`, in ``log_dir``), 2 CPUs, its own temp dir,
    loopback only, token auth on (the embedded cluster's token file, so one test process can switch between the two).
    Ray's defaults otherwise (no nb2prod system config). Stopped by its process group, SIGKILL after 5 s."""
    from nb2prod.runner.cluster import agent_ports, token_path

    temp = f"/tmp/nb2prod-rs-{os.getpid()}-{free_port()}"  # short: Ray's unix socket paths are limited
    port = free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token_path())}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "nb2prod.runner.raystart", "start", "--head", "--block",
           "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
           "--disable-usage-stats", f"--temp-dir={temp}", *agent_ports(), f"--ray-client-server-port={free_port()}", f"--dashboard-port={free_port()}",
           "--no-monitor", "--include-log-monitor=false"]  # fewer daemons racing the raylet's 15 s agent wait
    log = log_dir / f"ray-start-{port}.log"
    proc = None
    try:
        for _ in range(3):  # a loaded machine can miss the raylet's fixed 15 s wait for its agents
            with open(log, "w") as out:
                proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, cwd=log_dir)  # users start theirs anywhere
            deadline = time.time() + 180
            while "Ray runtime started" not in log.read_text() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            if "Ray runtime started" in log.read_text():
                break
            stop_group(proc)
        else:
            raise RuntimeError(f"`ray start --head` failed:\n{log.read_text()[-3000:]}")
        client = {k: env[k] for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
        yield {"address": f"127.0.0.1:{port}", "temp_dir": temp, "env": {**os.environ, **client}}
    finally:
        if proc is not None:
            stop_group(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_start_cluster(nb2prod_home):
    """The session's :func:`ray_start` cluster."""
    with ray_start(nb2prod_home) as cluster:
        yield cluster


def _switch(address: str | None) -> None:
    """Connect this test process to ``address`` (None: the embedded cluster), and its subprocesses too."""
    import ray

    from nb2prod.runner import cluster

    ray.shutdown()
    if address:
        os.environ["RAY_ADDRESS"] = address
    else:
        os.environ.pop("RAY_ADDRESS", None)
    cluster.connect(address)


@pytest.fixture(scope="module", params=["embedded", pytest.param("ray-start", marks=pytest.mark.slow)])
def any_cluster(request, ray_cluster):
    """The runner's end-to-end tests run on the embedded cluster and (slow lane) on a `ray start` cluster."""
    if request.param == "embedded":
        yield ray_cluster
        return
    address = request.getfixturevalue("ray_start_cluster")["address"]
    cache = request.getfixturevalue("tmp_path_factory").mktemp("ray-start-cache")
    os.environ["NB2PROD_CACHE_DIR"] = str(cache)  # cache keys are content-based: the embedded variant's entries
    _switch(address)                               # would make these runs cache hits
    try:
        yield address
    finally:
        os.environ.pop("NB2PROD_CACHE_DIR", None)
        _switch(None)


@pytest.fixture
def tracking_uri(nb2prod_home) -> str:
    return os.environ["MLFLOW_TRACKING_URI"]


@pytest.fixture
def mlflow_client(tracking_uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


@pytest.fixture
def example_notebook(tmp_path) -> Path:
    """A private copy of the example pipeline notebook."""
    target = tmp_path / "pipeline.ipynb"
    shutil.copy(EXAMPLE, target)
    return target


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    """Run ``nb2prod ARGS`` in a subprocess with the session environment."""
    return subprocess.run([sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, **kw)


def make_notebook(path: Path, cells: list[tuple[str, list[str]]]) -> Path:
    """Write a notebook of code cells given as (source, tags)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": tags} if tags else {}) for src, tags in cells])
    nbformat.write(nb, path)
    return path


def committed(*files: Path) -> str:
    """Make the files' directory a git work tree with ``files`` committed; the commit's id."""
    git = ["git", "-C", str(files[0].parent), "-c", "user.name=nb2prod", "-c", "user.email=nb2prod@example.com"]
    for args in (["init", "-q"], ["add", *(f.name for f in files)], ["commit", "-qm", "files"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (see tests/postgres.py); skipped only without its binaries."""
    from tests.postgres import PostgresServer, binaries

    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin "
                    "(Debian/Ubuntu: apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_url(request, tmp_path, monkeypatch) -> str:
    """An empty run store of each kind, named by ``NB2PROD_DATABASE_URL`` (inherited by subprocesses): a SQLite
    file under a private ``NB2PROD_HOME``, or a fresh database on the session's PostgreSQL server."""
    monkeypatch.setenv("NB2PROD_HOME", str(tmp_path / "home"))
    if request.param == "sqlite":
        (tmp_path / "home").mkdir()
        url = f"sqlite:///{tmp_path / 'home' / 'nb2prod.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    monkeypatch.setenv("NB2PROD_DATABASE_URL", url)
    return url


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
        deadline = time.time() + MLFLOW_SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.read() == b"OK":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(directory / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_group(proc, grace_s=10)
        log.close()
