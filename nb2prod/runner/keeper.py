"""A tiny long-lived driver that owns the coordinator actor, on any cluster.

Ray ties worker processes to the job that created an actor: when that job's driver exits, its
workers go too, and tasks that a detached actor of a finished job submits get fresh workers.
Creating the coordinator from this never-ending job keeps stage workers (and what they imported)
warm across `nb2prod run` processes and across clients.

- Embedded cluster: :func:`nb2prod.runner.cluster.start` starts it next to the cluster (killed by ``stop``).
- Any other cluster (``--ray-address``): the first client calls :func:`launch`, which creates a detached
  :class:`KeeperHost` actor on the head node; that actor runs the keeper as its child process, which
  exits when its host goes (``ray stop``, the cluster's end).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

CHECK_S = 2.0
IN_CLUSTER = "--in-cluster"
WORKER_PYTHONPATH = "NB2PROD_WORKER_PYTHONPATH"  # set for a keeper in the cluster (see create_coordinator)


def workdir(parent: Path) -> Path:
    """The working directory a keeper (and, on the embedded cluster, ``ray start``) runs in: an empty private
    directory under ``parent``. Ray puts a driver's working directory on the ``sys.path`` of its job's workers, and
    the keeper's job runs every stage: a stage imports its notebook's modules from the notebook's directory only,
    never from wherever the cluster or its first client happened to start; and workers whose working directory
    was deleted would fail every stage (``os.getcwd()``). The coordinator moves into the one under its Ray session
    directory as it starts."""
    from nb2prod.home import private_dir

    return private_dir(parent / "keeper-cwd")


class KeeperHost:
    """Detached actor body: runs the keeper driver for this cluster as a child process of its worker."""

    def __init__(self, warm: dict[str, Any] | None = None) -> None:
        import ray

        from nb2prod.runner.cluster import session_dir
        from nb2prod.runner.coordinator import code_fingerprint

        self._code = code_fingerprint()
        context = ray.get_runtime_context()
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_JOB_ID", "RAY_ADDRESS")}
        env["NB2PROD_NODE_IP"] = ray.util.get_node_ip_address()
        env[WORKER_PYTHONPATH] = os.environ.get("PYTHONPATH", "")  # what this cluster's workers start with
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the code this host runs (checked)
        session = session_dir()
        with open(session / "logs" / f"nb2prod-keeper-{self._code}.log", "ab") as out:
            self._proc = subprocess.Popen([sys.executable, "-m", "nb2prod.runner.keeper", IN_CLUSTER,
                                           context.gcs_address, *([json.dumps(warm)] if warm else [])], env=env,
                                          cwd=workdir(session), stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT)

    def version(self) -> dict[str, str]:
        from nb2prod.runner.coordinator import code_version

        return code_version(self._code)


def launch(fingerprint: str, warm: dict[str, Any] | None = None) -> None:
    """Make sure a keeper for this nb2prod code runs in the connected cluster (checked to run our code); a new
    one warms a stage worker with ``warm`` (:func:`warm_hint`)."""
    import ray

    from nb2prod.runner.cluster import HEAD_NODE, NAMESPACE
    from nb2prod.runner.coordinator import check_version, code_version

    host = ray.remote(KeeperHost).options(
        name=f"keeper-{fingerprint}", namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
        resources={HEAD_NODE: 0.001}, max_restarts=-1).remote(warm)
    check_version(host, code_version(fingerprint), "keeper")


def warm_hint(request) -> dict[str, Any]:
    """What the keeper of a cluster that is just coming up prepares while the first run gets under way (the client
    connecting, the coordinator starting): the run's SQLite tracking store, opened ahead by the MLflow writer (the
    embedded cluster only: another cluster's head node may not see it); and, when stages run side by side, their
    workers, warmed with the modules the stages import (never the notebook's own, which stay in ``dir``): the
    first stage starts in a fresh worker anyway, the workers of the stages beside it are warmed."""
    from nb2prod.core.analysis import imported_modules
    from nb2prod.tracking import sqlite_path

    spec = request.spec
    depth: dict[str, int] = {}
    for name, stage in spec.stages.items():  # notebook order: upstream first
        depth[name] = 1 + max((depth[u] for u in stage.upstream), default=0)
    width = max(Counter(depth.values()).values(), default=0)
    cells = {i for stage in spec.stages.values() for i in stage.cells} | set(spec.setup_cells)
    modules = sorted({m for i in cells for m in imported_modules(spec.cells[i].source)}) if width > 1 else []
    store = request.tracking_uri if sqlite_path(request.tracking_uri) else None  # never a URI with credentials
    return {"tracking_uri": store, "modules": modules, "width": width, "dir": str(Path(spec.notebook).parent),
            "ship": request.ship.key if request.ship else None}


def main() -> None:
    in_cluster = sys.argv[1] == IN_CLUSTER
    # embedded: argv[1] is the cluster's temp dir, which marks this process as part of the cluster for `stop`;
    # then, for a keeper that comes up with its cluster, the warm_hint() of the run that started it
    args = sys.argv[3:] if in_cluster else sys.argv[2:]
    warm = json.loads(args[0]) if args else None
    import ray  # its environment is set (the cluster's own, or the host's): imported while the cluster comes up

    from nb2prod.runner.cluster import connect, started
    from nb2prod.runner.coordinator import (code_fingerprint, coordinator_name, create_coordinator, retire_stale,
                                            worker_runtime_env)
    from nb2prod.runner.tasks import warm_worker

    if not in_cluster and not started():
        return  # its cluster did not come up
    connect(sys.argv[2] if in_cluster else None)

    running = code_fingerprint()
    host = os.getppid()
    store = warm["tracking_uri"] if warm and not in_cluster else None  # the embedded cluster shares the client's disk
    coordinator = create_coordinator(coordinator_name(running), store)
    if warm and warm["modules"]:  # a fresh worker runs the first stage: warm those that run beside it
        runtime_env = worker_runtime_env()  # the stages' workers: theirs, or they would not be the same workers
        for _ in range(min(warm["width"], int(ray.cluster_resources().get("CPU", 1))) - 1):
            warm_worker.options(**({"runtime_env": runtime_env} if runtime_env else {})).remote(
                warm["modules"], warm["dir"], warm["ship"])
    ray.get(coordinator.ready.remote())
    draining = True
    while code_fingerprint() == running:  # nb2prod upgraded: restart with the new code
        if in_cluster and os.getppid() != host:
            return  # the host actor's worker is gone (the cluster stopped, or the host was killed)
        if draining:  # coordinators of the previous code finish their runs first
            try:
                draining = retire_stale(coordinator_name(running)) > 0
            except Exception:  # noqa: BLE001 - a Ray hiccup: try again at the next check
                pass
        time.sleep(CHECK_S)
    if in_cluster:
        return  # the next client of the new code launches a keeper for it
    os.execv(sys.executable, [sys.executable, "-m", "nb2prod.runner.keeper", sys.argv[1]])


if __name__ == "__main__":
    from nb2prod.runner.cluster import without_format_checkers

    without_format_checkers()
    main()
