"""An nb2prod upgrade (new code, so a new coordinator) never kills a run in flight: the keeper retires a
stale coordinator only once it has no run going. (ray is imported inside the test: nb2prod must set up
the embedded cluster's environment before the first ``import ray`` of the session.)"""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]
STALE = "coordinator-000000000000"


class StaleCoordinator:
    """Stands for a coordinator of the previous nb2prod code with one run in flight."""

    def __init__(self) -> None:
        self.running = True

    def busy(self) -> bool:
        return self.running

    def finish(self) -> None:
        self.running = False


def _exists(name: str) -> bool:
    import ray

    from nb2prod.runner.cluster import NAMESPACE

    try:
        ray.get_actor(name, namespace=NAMESPACE)
        return True
    except ValueError:
        return False


def test_a_stale_coordinator_finishes_its_runs_before_it_is_retired():
    import ray

    from nb2prod.runner.cluster import NAMESPACE
    from nb2prod.runner.coordinator import coordinator_name, retire_stale

    stale = ray.remote(num_cpus=0)(StaleCoordinator).options(name=STALE, namespace=NAMESPACE,
                                                              lifetime="detached").remote()
    ray.get(stale.busy.remote())
    assert retire_stale(coordinator_name()) == 1
    assert ray.get(stale.busy.remote()) is True  # still serving its run
    ray.get(stale.finish.remote())
    assert retire_stale(coordinator_name()) == 0
    deadline = time.time() + 20
    while _exists(STALE) and time.time() < deadline:
        time.sleep(0.2)
    assert not _exists(STALE)
