"""Cache keys of partial runs (no Ray needed: the cache, the run store and the plan are real, the runs that
stored the entries are recorded directly): a stage taken from an earlier run contributes the key of the entry
actually used, so what a ``--stage`` or resumed run stores is keyed by what it consumed."""

from __future__ import annotations

import pytest

from nb2prod import cache
from nb2prod.cache.plan import plan
from nb2prod.contracts import RunOptions
from nb2prod.core.builder import build_spec
from nb2prod.core.cachekey import stage_keys
from nb2prod.core.status import RunStatus
from nb2prod.errors import UsageError
from nb2prod.store import runs as store
from tests.conftest import make_notebook


@pytest.fixture
def spec(tmp_path, nb2prod_home):
    return build_spec(make_notebook(tmp_path / "te.ipynb", [
        ("n = 200", ["parameters"]),
        ("data = list(range(n))  # plan keys", ["stage:train"]),
        ("total = sum(data)", ["stage:evaluate"]),
    ]))


def _recorded_run(spec, n: int, statuses: dict[str, str]) -> str:
    """A run of ``spec`` with parameter ``n`` whose successful stages stored their outputs in the cache."""
    keys = stage_keys(spec, {"n": n})
    run_id = store.new_run_id()
    store.create_run(run_id, spec.notebook, dict.fromkeys(spec.stages))
    store.set_cache_keys(run_id, keys)
    for name, status in statuses.items():
        store.update_stage(run_id, name, status=status)
        if status == "done":
            cache.write(cache.cache_dir(), keys[name], {"stage": name, "n": n}, {"stage": name, "run_id": run_id})
    store.finish_run(run_id, RunStatus.DONE if "failed" not in statuses.values() else RunStatus.FAILED)
    return run_id


def test_a_stage_run_keys_its_stage_by_the_upstream_entry_it_takes(spec):
    _recorded_run(spec, 200, {"train": "done", "evaluate": "done"})
    _, keys, hits = plan(spec, {"n": 500}, RunOptions(parameters={"n": 500}, stages=["evaluate"]))
    assert set(hits) == {"train"}
    assert keys == stage_keys(spec, {"n": 200})  # train of n=200 is what evaluate consumes
    assert keys["evaluate"] != stage_keys(spec, {"n": 500})["evaluate"]
    _, full_keys, full_hits = plan(spec, {"n": 500}, RunOptions(parameters={"n": 500}))
    assert full_hits == {} and full_keys == stage_keys(spec, {"n": 500})


def test_a_resumed_run_keys_its_stages_by_the_entries_it_takes(spec):
    failed = _recorded_run(spec, 200, {"train": "done", "evaluate": "failed"})
    _, keys, hits = plan(spec, {"n": 500}, RunOptions(parameters={"n": 500}, resume_from=failed))
    assert set(hits) == {"train"} and keys == stage_keys(spec, {"n": 200})


def test_resuming_a_run_of_another_notebook_is_refused(spec, tmp_path):
    other = build_spec(make_notebook(tmp_path / "other.ipynb", [("data = [1]  # other", ["stage:train"])]))
    run_id = _recorded_run(other, 1, {"train": "done"})
    with pytest.raises(UsageError, match=f"is a run of {other.notebook}"):
        plan(spec, {"n": 200}, RunOptions(resume_from=run_id))


def test_resuming_a_run_whose_every_stage_succeeded_is_refused(spec):
    done = _recorded_run(spec, 200, {"train": "done", "evaluate": "done"})
    with pytest.raises(UsageError, match="nothing to resume: every stage of it succeeded; `nb2prod run "):
        plan(spec, {"n": 200}, RunOptions(resume_from=done))


def test_a_run_that_ran_only_some_stages_can_be_resumed(spec):
    partial = _recorded_run(spec, 200, {"train": "done", "evaluate": "skipped"})
    _, _, hits = plan(spec, {"n": 200}, RunOptions(resume_from=partial))
    assert set(hits) == {"train"}


def test_resuming_a_running_run_is_refused(spec):
    running = store.new_run_id()
    store.create_run(running, spec.notebook, dict.fromkeys(spec.stages))
    with pytest.raises(UsageError, match="is still running"):
        plan(spec, {"n": 200}, RunOptions(resume_from=running))
