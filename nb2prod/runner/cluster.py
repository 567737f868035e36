"""nb2prod's embedded Ray cluster (loopback-only, token auth on) and connecting to any cluster.

With no ``--ray-address`` and no ``RAY_ADDRESS``, nb2prod connects to its own local cluster
(state under ``$NB2PROD_HOME/cluster``), starting one if none runs. It is started with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (every Ray socket binds 127.0.0.1) and
``RAY_AUTH_MODE=token`` with a token file of its own; every client sets the same variables.
It keeps running between runs (warm); ``nb2prod cluster down`` stops it: every process of the cluster's
own process tree (the session ``ray start`` ran in, the keeper's, and their descendants — recorded at
start, never found by name) gets SIGTERM, then SIGKILL if it is still there (Ray's agents ignore SIGTERM).
Ray's temp dir (its unix sockets) lives in a per-user 0700 directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from nb2prod.errors import Nb2ProdError
from nb2prod.home import home_dir, private_dir, private_file, write_private

NAMESPACE = "nb2prod"
_GCS_ADDRESS = re.compile(r"^[^/:\s]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$")  # host:port of a GCS (not ray://, auto, http)
CONNECT_PROBE_S = 10.0  # Ray itself retries an address where nothing listens for minutes
HEAD_NODE = "node:__internal_head__"  # a resource only the head node has (the coordinator's node)
LOOPBACK = "127.0.0.1"
# Keep warm workers: no prestart for every connecting driver, idle workers kept for 10 minutes.
SYSTEM_CONFIG = {"enable_worker_prestart": False, "num_workers_soft_limit": 16,
                 "idle_worker_killing_time_threshold_ms": 600_000}


def cluster_dir() -> Path:
    return private_dir(home_dir() / "cluster")


def _temp_dir() -> str:
    """Ray's temp dir for this NB2PROD_HOME, in :func:`user_tmp`; short, because Ray's unix socket paths
    (``<temp>/session_<date>_<time>_<pid>/sockets/plasma_store``) must stay under ~107 characters."""
    return str(user_tmp() / f"ray-{hashlib.sha256(str(home_dir()).encode()).hexdigest()[:10]}")


def user_tmp() -> Path:
    """``/tmp/nb2prod-<uid>``: a 0700 directory of this user's, created if missing. One that another user
    created first (or that others can enter) is refused, never used."""
    path = Path(f"/tmp/nb2prod-{os.geteuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise Nb2ProdError(f"{path} is not a private directory of this user (it is a link, belongs to uid "
                           f"{st.st_uid}, or has mode {stat.S_IMODE(st.st_mode):04o}); nb2prod keeps Ray's sockets "
                           "there, so it must be yours and 0700: remove it (or `chmod 700` it if it is yours)")
    return path


def session_dir() -> Path:
    """The Ray session directory on this node, from a process of the cluster (a worker or a driver)."""
    import ray

    return Path(ray._private.worker.global_worker.node.get_session_dir_path())


def token_path() -> Path:
    """The embedded cluster's auth token file (created 0600 on first use)."""
    path = cluster_dir() / "auth_token"
    if not path.exists():
        write_private(path, secrets.token_hex(32))
    return private_file(path)


# What the embedded cluster's processes get of the starting process's environment (they and every later run's
# stages keep it): what Python, Ray, CUDA and nb2prod/MLflow settings need, never the starter's other variables
# (cloud keys, tokens). NB2PROD_RAY_ENV names more (comma-separated), e.g. AWS_ACCESS_KEY_ID for an S3 artifact store.
RAY_ENV_NAMES = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH",
                 "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "MPLBACKEND"}
RAY_ENV_PREFIXES = ("LC_", "RAY_", "CUDA_", "NVIDIA_", "CONDA", "OMP_", "MKL_", "OPENBLAS_", "MLFLOW_", "NB2PROD_")
NOT_FOR_RAY = {"NB2PROD_DATABASE_URL", "NB2PROD_SECRET_VALUES"}
LAZY_IMPORTS = str(Path(__file__).resolve().parent / "lazy")  # see nb2prod/runner/lazy/rfc3987_syntax


def ray_environment() -> dict[str, str]:
    """The environment the embedded cluster is started with: the allowed part of ours, plus :func:`embedded_env`."""
    extra = {n.strip() for n in os.environ.get("NB2PROD_RAY_ENV", "").split(",") if n.strip()}
    kept = {k: v for k, v in os.environ.items()
            if (k in RAY_ENV_NAMES or k in extra or k.startswith(RAY_ENV_PREFIXES)) and k not in NOT_FOR_RAY}
    kept["PYTHONPATH"] = with_lazy_imports(kept.get("PYTHONPATH"))
    return {**kept, **embedded_env()}


def with_lazy_imports(pythonpath: str | None) -> str:
    """``pythonpath`` with :data:`LAZY_IMPORTS` first: a Python process started with it imports lazily what it
    would spend seconds importing for nothing (every process of the embedded cluster; on any other cluster the
    coordinator and the stage workers, through the coordinator's runtime env)."""
    return os.pathsep.join(p for p in (LAZY_IMPORTS, pythonpath) if p)


def embedded_env() -> dict[str, str]:
    """Environment every process that starts or joins the embedded cluster needs."""
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_path())}


def _state() -> dict[str, Any] | None:
    try:
        return json.loads((cluster_dir() / "cluster.json").read_text())
    except (OSError, ValueError):
        return None


def _reachable(address: str, timeout: float = 0.5) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def agent_ports() -> list[str]:
    """``ray start`` flags for every agent port, chosen up front (see :mod:`nb2prod.runner.raystart`)."""
    from nb2prod.runner.raystart import AGENT_PORT_FLAGS

    return [f"{flag}={_free_port()}" for flag in AGENT_PORT_FLAGS]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@contextmanager
def _lock() -> Iterator[None]:
    with open(private_file(cluster_dir() / "lock"), "w") as f:
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
          resources: dict[str, float] | None = None, warm: dict[str, Any] | None = None) -> str:
    """Start the embedded cluster if it is not up; return its address. Its keeper warms a stage worker with
    ``warm`` (:func:`nb2prod.runner.keeper.warm_hint`)."""
    from nb2prod.runner.keeper import workdir
    from nb2prod.runner.raystart import LEAN
    from nb2prod.runner.spawn import spawn_detached

    with _lock():
        state = status()
        if state:
            return state["address"]
        left = _state()
        if left:  # a cluster that died half-way: what is left of it goes before a new one starts
            _terminate(_processes(left))
        port = _free_port()
        cmd = [sys.executable, "-m", "nb2prod.runner.raystart", "start", LEAN, "--head", f"--node-ip-address={LOOPBACK}",
               f"--port={port}", *agent_ports(),
               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={_temp_dir()}",
               # no autoscaler for a fixed local cluster, no log forwarding (stage output travels through nb2prod)
               "--no-monitor", "--include-log-monitor=false",
               f"--system-config={json.dumps(SYSTEM_CONFIG)}"]
        if num_cpus is not None:
            cmd.append(f"--num-cpus={num_cpus}")
        if num_gpus is not None:
            cmd.append(f"--num-gpus={num_gpus}")
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        log = private_file(cluster_dir() / "start.log")
        env = ray_environment()
        cwd = workdir(cluster_dir())  # the workers' (the raylet's) and the keeper's: never this client's
        with open(log, "w") as out:  # not a pipe: Ray's daemons inherit it and never close it
            # a session of its own: every daemon `ray start` leaves behind stays in it (workers change only their
            # process group), so `stop` finds the whole cluster by this session id
            ray_start = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=cwd)
            # the keeper starts meanwhile: it imports what it needs, then waits for this lock (a session of its own)
            sessions = [ray_start.pid, spawn_detached(
                [sys.executable, "-m", "nb2prod.runner.keeper", _temp_dir(), *([json.dumps(warm)] if warm else [])],
                cluster_dir() / "keeper.log", cwd=cwd, env=env)]
            os.environ.update(embedded_env())  # so does this process, which connects next: Ray reads these as it
            import ray  # noqa: F401,E402  # is imported (~0.5 s)

            code = ray_start.wait()
        if code != 0:  # the keeper, still waiting for the lock, goes with the rest
            _terminate(_processes({"sessions": sessions, "boot_time": _boot_time()}))
            tail = "\n".join(log.read_text().strip().splitlines()[-5:])
            raise Nb2ProdError(f"could not start the local Ray cluster (log: {log}):\n{tail}")
        address = f"{LOOPBACK}:{port}"
        write_private(cluster_dir() / "cluster.json", json.dumps(
            {"address": address, "temp_dir": _temp_dir(), "started_at": time.time(), "sessions": sessions,
             "boot_time": _boot_time()}))
        return address


def started() -> bool:
    """For the embedded cluster's keeper, which starts beside ``ray start``: wait until the starting process is done;
    whether the cluster is up (a keeper never starts a cluster itself)."""
    with _lock():
        return status() is not None


def stop() -> bool:
    """Stop the embedded cluster: every process of its own process tree, and nothing else."""
    state = _state()
    if not state:
        return False
    _terminate(_processes(state))
    (cluster_dir() / "cluster.json").unlink(missing_ok=True)
    return True


def _boot_time() -> float:
    import psutil

    return psutil.boot_time()


def _processes(state: dict[str, Any]) -> list:
    """The cluster's process tree: the processes of the sessions recorded at start, and their descendants.
    (A cluster started by nb2prod 0.1 recorded no sessions: its processes are those naming its own temp dir in
    their command line, and their descendants.) After a reboot the recorded sessions name nothing of ours."""
    import psutil

    if "sessions" in state and abs(state.get("boot_time", 0) - _boot_time()) > 2:
        return []
    sessions, marker = set(state.get("sessions", [])), state.get("temp_dir") if "sessions" not in state else None
    found: dict[int, Any] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            ours = os.getsid(proc.pid) in sessions if sessions else \
                bool(marker) and any(marker in part for part in proc.info["cmdline"] or [])
            if ours:
                found[proc.pid] = proc
                found.update((child.pid, child) for child in proc.children(recursive=True))
        except (psutil.Error, OSError):
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def _terminate(procs: list) -> None:
    """SIGTERM, a few seconds' grace, then SIGKILL for what is left (Ray's agents ignore SIGTERM)."""
    import psutil

    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


# jsonschema (imported by Ray and nbformat) imports these optional modules for format checks that nb2prod's own
# processes never ask for: rfc3987_syntax builds Earley grammars at import (~0.7 s), the rest take ~70 ms.
FORMAT_CHECKERS = ("rfc3987_syntax", "rfc3986_validator", "rfc3339_validator", "isoduration", "webcolors", "fqdn",
                   "jsonpointer", "uri_template")


def without_format_checkers() -> None:
    """For a process of nb2prod's own that validates no formats (the CLI's ``run``, the keeper), before Ray is
    imported: jsonschema skips a format whose module cannot be imported, so these are not imported at all."""
    for module in FORMAT_CHECKERS:
        sys.modules.setdefault(module, None)  # type: ignore[arg-type]


def without_serialization_addons() -> None:
    """For a process that sends only nb2prod's own requests (the CLI's ``run``), before :func:`connect`: Ray
    registers no serializers for pydantic, starlette and Ray Data's Arrow blocks in it, whose imports (pydantic,
    pyarrow) are ~0.35 s of every ``nb2prod run``. Objects of those kinds still travel, by their own pickling
    rules; what a worker serialized with those serializers is read here without them."""
    global _SERIALIZATION_ADDONS
    _SERIALIZATION_ADDONS = False


_SERIALIZATION_ADDONS = True


def _reread_auth_settings() -> None:
    """Make a Ray imported before :func:`embedded_env` was set (a kernel whose notebook imported ray, then ran
    ``%nb2prod run``) read its token settings again, as Ray's own tests reset them; else it cannot join."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def connect(address: str | None = None, warm: dict[str, Any] | None = None) -> str:
    """Connect this process to Ray: ``address``, else ``RAY_ADDRESS``, else the embedded cluster (started, with
    ``warm`` for its keeper, if it is not up)."""
    address = address or os.environ.get("RAY_ADDRESS")
    extra: dict[str, Any] = {}
    state = _state()
    embedded = not address or bool(state and state["address"] == address)
    if embedded:
        imported_before = "ray" in sys.modules and not sys.modules["ray"].is_initialized()
        os.environ.update(embedded_env())
        if imported_before:
            _reread_auth_settings()
        address = start(warm=warm)
        extra["_node_ip_address"] = LOOPBACK  # else Ray may resolve 127.0.0.1 to the external IP and hang
    elif os.environ.get("NB2PROD_NODE_IP"):  # a keeper in the cluster: its own node (clients: Ray finds theirs)
        extra["_node_ip_address"] = os.environ["NB2PROD_NODE_IP"]
    if not embedded and _GCS_ADDRESS.match(address) and not _reachable(address, CONNECT_PROBE_S):
        raise Nb2ProdError(f"cannot connect to the Ray cluster at {address}: nothing answers there (is the cluster "
                           "up? `ray start --head` prints the address to use, `ray status` checks it)")
    import ray

    if ray.is_initialized():
        return address
    if not _SERIALIZATION_ADDONS:
        import ray.util.serialization_addons as addons

        addons.apply = lambda context: None
    if embedded and ray._private.ray_constants.ENABLE_RAY_CLUSTER:
        raise Nb2ProdError("ray was imported before nb2prod set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so it cannot "
                           "join the loopback-only local cluster; set that variable before starting Python, or let "
                           "nb2prod connect before importing ray")
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.ERROR, **extra)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = "" if embedded or os.environ.get("RAY_AUTH_MODE") == "token" else (
            "; a cluster with token authentication (Ray's default) needs RAY_AUTH_MODE=token here, and the "
            "cluster's token in RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
        raise Nb2ProdError(f"cannot connect to the Ray cluster at {address}: {exc}{hint}") from None
    return address
