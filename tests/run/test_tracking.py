"""The pip-freeze listing logged with every run is cached, and an install invalidates the cache; concurrent first
runs of one experiment share it."""

from __future__ import annotations

import sys
import threading

from nb2prod.tracking import Tracker, pip_freeze


def _install(site, name: str, version: str) -> None:
    dist = site / f"{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_pip_freeze_sees_a_new_install(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    _install(site, "nb2prod-fake-one", "1.0")
    first = pip_freeze()
    assert "nb2prod-fake-one==1.0" in first and "nb2prod-fake-two" not in first
    assert pip_freeze() is first  # unchanged environment: the cached listing
    _install(site, "nb2prod-fake-two", "2.5")
    assert "nb2prod-fake-two==2.5" in pip_freeze()


def test_concurrent_first_runs_of_an_experiment_share_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mine, another_process = Tracker(uri), Tracker(uri)  # the coordinator's shared tracker, and another writer's
    ids: list[str] = []
    threads = [threading.Thread(target=lambda t=t: ids.append(t.experiment_id("pipeline")))
               for t in (mine, another_process, mine, another_process)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 4 and len(set(ids)) == 1
