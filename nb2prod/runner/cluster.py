"""nb2prod's embedded Ray cluster (loopback-only, token auth on) and connecting to any cluster.

With no ``--ray-address`` and no ``RAY_ADDRESS``, nb2prod connects to its own local cluster
(state under ``$NB2PROD_HOME/cluster``), starting one if none runs. It is started with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (every Ray socket binds 127.0.0.1) and
``RAY_AUTH_MODE=token`` with a token file of its own; every client sets the same variables.
It keeps running between runs (warm); ``nb2prod cluster down`` stops it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from nb2prod.errors import Nb2ProdError
from nb2prod.home import home_dir

NAMESPACE = "nb2prod"
LOOPBACK = "127.0.0.1"
# Keep warm workers: no prestart for every connecting driver, idle workers kept for 10 minutes.
SYSTEM_CONFIG = {"enable_worker_prestart": False, "num_workers_soft_limit": 16,
                 "idle_worker_killing_time_threshold_ms": 600_000}


def cluster_dir() -> Path:
    path = home_dir() / "cluster"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _temp_dir() -> str:
    # Ray's unix sockets need a short path; one temp dir per NB2PROD_HOME.
    return f"/tmp/nb2prod-ray-{hashlib.sha256(str(home_dir()).encode()).hexdigest()[:10]}"


def token_path() -> Path:
    """The embedded cluster's auth token file (created 0600 on first use)."""
    path = cluster_dir() / "auth_token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


# What the embedded cluster's processes get of the starting process's environment (they and every later run's
# stages keep it): what Python, Ray, CUDA and nb2prod/MLflow settings need, never the starter's other variables
# (cloud keys, tokens). NB2PROD_RAY_ENV names more (comma-separated), e.g. AWS_ACCESS_KEY_ID for an S3 artifact store.
RAY_ENV_NAMES = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH",
                 "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "MPLBACKEND"}
RAY_ENV_PREFIXES = ("LC_", "RAY_", "CUDA_", "NVIDIA_", "CONDA", "OMP_", "MKL_", "OPENBLAS_", "MLFLOW_", "NB2PROD_")
NOT_FOR_RAY = {"NB2PROD_DATABASE_URL", "NB2PROD_SECRET_VALUES"}


def ray_environment() -> dict[str, str]:
    """The environment the embedded cluster is started with: the allowed part of ours, plus :func:`embedded_env`."""
    extra = {n.strip() for n in os.environ.get("NB2PROD_RAY_ENV", "").split(",") if n.strip()}
    kept = {k: v for k, v in os.environ.items()
            if (k in RAY_ENV_NAMES or k in extra or k.startswith(RAY_ENV_PREFIXES)) and k not in NOT_FOR_RAY}
    return {**kept, **embedded_env()}


def embedded_env() -> dict[str, str]:
    """Environment every process that starts or joins the embedded cluster needs."""
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_path())}


def _state() -> dict[str, Any] | None:
    try:
        return json.loads((cluster_dir() / "cluster.json").read_text())
    except (OSError, ValueError):
        return None


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@contextmanager
def _lock() -> Iterator[None]:
    with open(cluster_dir() / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def status() -> dict[str, Any] | None:
    """The embedded cluster's address and settings when it is up, else None."""
    state = _state()
    return state if state and _reachable(state["address"]) else None


def is_embedded(address: str) -> bool:
    """Whether ``address`` is nb2prod's local cluster."""
    state = _state()
    return bool(state and state["address"] == address)


def start(num_cpus: int | None = None, num_gpus: int | None = None,
          resources: dict[str, float] | None = None) -> str:
    """Start the embedded cluster if it is not up; return its address."""
    with _lock():
        state = status()
        if state:
            return state["address"]
        port = _free_port()
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--node-ip-address={LOOPBACK}",
               f"--port={port}",
               f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}",
               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={_temp_dir()}",
               f"--system-config={json.dumps(SYSTEM_CONFIG)}"]
        if num_cpus is not None:
            cmd.append(f"--num-cpus={num_cpus}")
        if num_gpus is not None:
            cmd.append(f"--num-gpus={num_gpus}")
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        log = cluster_dir() / "start.log"
        with open(log, "w") as out:  # not a pipe: Ray's daemons inherit it and never close it
            code = subprocess.call(cmd, env=ray_environment(), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        if code != 0:
            tail = "\n".join(log.read_text().strip().splitlines()[-5:])
            raise Nb2ProdError(f"could not start the local Ray cluster (log: {log}):\n{tail}")
        address = f"{LOOPBACK}:{port}"
        (cluster_dir() / "cluster.json").write_text(json.dumps(
            {"address": address, "temp_dir": _temp_dir(), "started_at": time.time()}))
        with open(cluster_dir() / "keeper.log", "w") as out:
            subprocess.Popen([sys.executable, "-m", "nb2prod.runner.keeper", _temp_dir()],
                             env=ray_environment(), stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        return address


def stop() -> bool:
    """Stop the embedded cluster's processes (only ours, not other Ray clusters)."""
    import psutil

    state = _state()
    if not state:
        return False
    marker = state["temp_dir"]
    procs = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(marker in part for part in proc.info["cmdline"] or []):
                procs.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    (cluster_dir() / "cluster.json").unlink(missing_ok=True)
    return True


def connect(address: str | None = None, *, log_to_driver: bool = False) -> str:
    """Connect this process to Ray: ``address``, else ``RAY_ADDRESS``, else the embedded cluster."""
    address = address or os.environ.get("RAY_ADDRESS")
    extra: dict[str, Any] = {}
    state = _state()
    embedded = not address or bool(state and state["address"] == address)
    if embedded:
        os.environ.update(embedded_env())
        address = start()
        extra["_node_ip_address"] = LOOPBACK  # else Ray may resolve 127.0.0.1 to the external IP and hang
    elif os.environ.get("NB2PROD_NODE_IP") or address.rpartition(":")[0] in (LOOPBACK, "localhost"):
        extra["_node_ip_address"] = os.environ.get("NB2PROD_NODE_IP") or LOOPBACK  # a keeper in the cluster
    import ray

    if ray.is_initialized():
        return address
    if embedded and ray._private.ray_constants.ENABLE_RAY_CLUSTER:
        raise Nb2ProdError("ray was imported before nb2prod set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so it cannot "
                           "join the loopback-only local cluster; set that variable before starting Python, or let "
                           "nb2prod connect before importing ray")
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=log_to_driver,
                 logging_level=logging.ERROR, **extra)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise Nb2ProdError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    return address
