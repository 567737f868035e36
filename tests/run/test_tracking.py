"""The pip-freeze listing logged with every run is cached, and an install invalidates the cache; concurrent first
runs of one experiment share it; a stage's MLflow run carries the stage's own times and final tags whether it was
created as the stage started or, the writer being behind, after it ended."""

from __future__ import annotations

import sys
import threading
import time

from nb2prod.contracts import StageResult
from nb2prod.core.builder import spec_from_notebook
from nb2prod.runner.hooks import RunContext, Tracking
from nb2prod.runner.request import RunRequest
from nb2prod.tracking import Tracker, pip_freeze
from tests.core.conftest import notebook


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


def _stage_run(tracking: Tracking, run: RunContext, stage: str, *, behind: bool) -> float:
    """A stage starts and ends on the hook; with ``behind`` the writer is busy until the stage has ended, else
    the stage ends once its run exists."""
    busy = threading.Event()
    if behind:
        tracking.writer.submit(busy.wait)
    run.attempts[stage] += 1
    tracking.on_stage_start(run, stage, None)
    started = time.time() + 0.5
    if not behind:
        tracking.children[stage].result()  # its run exists (RUNNING) while the stage runs
    tracking.on_stage_end(run, stage, StageResult("done", started_at=started, ended_at=started + 2.5,
                                                  duration_s=2.5, metrics={"score": 0.5} if behind else {}))
    busy.set()
    return started


def test_stage_runs_carry_the_stage_times_and_final_tags(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = spec_from_notebook(notebook([("x = 1", ["stage:live"]), ("y = x", ["stage:behind"])]), "nb.ipynb")
    request = RunRequest("r1", spec, {}, {}, {}, [], {}, "exp", tracker.uri, {"nb2prod.run_id": "r1"})
    run = RunContext.of(request, emit=lambda event: None, relay=None)
    tracking = Tracking(tracker)
    tracking.on_run_start(run)
    tracking.require()
    started = {stage: _stage_run(tracking, run, stage, behind=stage == "behind") for stage in ("live", "behind")}
    tracking.drain()
    assert tracking.folded == {"behind"}  # created after its stage ended: with its final tags, one write fewer
    for stage in ("live", "behind"):
        child = tracker.client.get_run(tracking.children[stage].result())
        assert child.info.status == "FINISHED" and child.data.tags["mlflow.parentRunId"] == run.mlflow_run_id
        assert child.data.tags["nb2prod.status"] == "done" and child.data.tags["nb2prod.attempts"] == "1"
        assert child.info.start_time <= int(started[stage] * 1000)  # submitted, then started
        assert child.info.end_time == int((started[stage] + 2.5) * 1000)
    behind = tracker.client.get_run(tracking.children["behind"].result())
    assert behind.info.start_time == int(started["behind"] * 1000) and behind.data.metrics == {"score": 0.5}


def test_a_parameter_value_longer_than_mlflow_keeps_is_cut_visibly(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = tracker.start_run(tracker.experiment_id("long"), "p", {}, params={"long": "x" * 7000, "short": [1, 2]})
    params = tracker.client.get_run(run_id).data.params
    assert len(params["long"]) == 6000 and params["long"].endswith("x…") and params["short"] == "[1, 2]"
