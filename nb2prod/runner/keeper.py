"""A tiny long-lived driver started with the embedded cluster: it owns the coordinator actor.

Ray ties worker processes to the job that created an actor; when that job's driver exits, the
workers go too. Creating the coordinator from this never-ending job keeps stage workers warm
across `nb2prod run` processes. Started by :func:`nb2prod.runner.cluster.start`, killed by ``stop``.
"""

from __future__ import annotations

import os
import sys
import time

CHECK_S = 2.0


def main() -> None:
    # argv[1] is the cluster's temp dir: it marks this process as part of the cluster for `stop`.
    from nb2prod.runner.cluster import connect

    connect()
    import ray

    from nb2prod.runner.coordinator import code_fingerprint, coordinator_name, get_coordinator, retire_stale

    running = code_fingerprint()
    ray.get(get_coordinator().ready.remote())
    draining = True
    while code_fingerprint() == running:  # nb2prod upgraded: restart with the new code
        if draining:  # coordinators of the previous code finish their runs first
            try:
                draining = retire_stale(coordinator_name(running)) > 0
            except Exception:  # noqa: BLE001 - a Ray hiccup: try again at the next check
                pass
        time.sleep(CHECK_S)
    os.execv(sys.executable, [sys.executable, "-m", "nb2prod.runner.keeper", *sys.argv[1:]])


if __name__ == "__main__":
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # see nb2prod.cli.run
    main()
