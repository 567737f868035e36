"""A tiny long-lived driver started with the embedded cluster: it owns the coordinator actor.

Ray ties worker processes to the job that created an actor; when that job's driver exits, the
workers go too. Creating the coordinator from this never-ending job keeps stage workers warm
across `nb2prod run` processes. Started by :func:`nb2prod.runner.cluster.start`, killed by ``stop``.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    # argv[1] is the cluster's temp dir: it marks this process as part of the cluster for `stop`.
    from nb2prod.runner.cluster import connect

    connect()
    import ray

    from nb2prod.runner.coordinator import get_coordinator

    ray.get(get_coordinator().ready.remote())
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # see nb2prod.cli.run
    main()
