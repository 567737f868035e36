"""Cached reruns, --force, --no-cache, resume and eviction against a real Ray cluster and MLflow store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nb2prod import api, cache
from nb2prod.contracts import RunOptions
from tests.conftest import make_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("any_cluster")]


def _statuses(record):
    return {name: s["status"] for name, s in record["stages"].items()}


@pytest.fixture
def chain(tmp_path):
    return make_notebook(tmp_path / "chain.ipynb", [
        ("scale = 2\noffset = 1", ["parameters"]),
        ("a = list(range(5))", ["stage:first"]),
        ("b = [v * scale for v in a]", ["stage:second"]),
        ("c = sum(b)", ["stage:third"]),
        ("d = len(a) + offset", ["stage:side"]),
    ])


def test_rerun_with_nothing_changed_runs_no_stage(chain, mlflow_client):
    first = api.run(chain)
    assert set(_statuses(first).values()) == {"done"}
    second = api.run(chain)
    assert set(_statuses(second).values()) == {"cached"}
    child = mlflow_client.get_run(second["stages"]["third"]["mlflow_run_id"])
    assert child.data.tags["nb2prod.cached"] == "true"
    assert child.data.tags["nb2prod.cached_from"] == first["id"]


def test_changing_a_parameter_reruns_only_its_readers(chain):
    api.run(chain)
    record = api.run(chain, RunOptions(parameters={"scale": 3}))
    assert _statuses(record) == {"first": "cached", "second": "done", "third": "done", "side": "cached"}


def test_editing_one_stage_reruns_it_and_downstream(chain):
    api.run(chain)
    nb = json.loads(chain.read_text())
    nb["cells"][2]["source"] = "b = [v * scale + 0 for v in a]"
    chain.write_text(json.dumps(nb))
    record = api.run(chain)
    assert _statuses(record) == {"first": "cached", "second": "done", "third": "done", "side": "cached"}


def test_force_and_no_cache(chain):
    api.run(chain)
    forced = api.run(chain, RunOptions(force=["second"]))
    assert _statuses(forced) == {"first": "cached", "second": "done", "third": "done", "side": "cached"}
    fresh = api.run(chain, RunOptions(no_cache=True))
    assert set(_statuses(fresh).values()) == {"done"}


def test_local_module_change_invalidates(tmp_path):
    (tmp_path / "helpers.py").write_text("def value():\n    return 1\n")
    nb = make_notebook(tmp_path / "mod.ipynb", [("import helpers\nx = helpers.value()", ["stage:use"]),
                                                 ("y = x", ["stage:after"])])
    assert api.run(nb)["stages"]["use"]["status"] == "done"
    assert api.run(nb)["stages"]["use"]["status"] == "cached"
    (tmp_path / "helpers.py").write_text("def value():\n    return 2\n")
    record = api.run(nb)
    assert _statuses(record) == {"use": "done", "after": "done"}
    assert cache.load_stage_outputs(record["id"], "use")["x"] == 2  # warm worker re-imported the module


def test_a_value_of_a_class_of_the_notebook_is_cached_and_read_back(tmp_path):
    """Only a stage's worker sees the notebook's own modules: the worker writes the cache entry, and the worker of
    a stage that consumes it unpickles it (the cache actor hands it over still pickled)."""
    (tmp_path / "shapes.py").write_text("class Box:\n    def __init__(self, side):\n        self.side = side\n")
    cells = [("from shapes import Box\nbox = Box(3)", ["stage:make"]), ("area = box.side ** 2", ["stage:use"])]
    nb = make_notebook(tmp_path / "box.ipynb", cells)
    assert _statuses(api.run(nb)) == {"make": "done", "use": "done"}
    make_notebook(nb, [cells[0], ("area = box.side ** 2 + 0", ["stage:use"])])
    record = api.run(nb)
    assert _statuses(record) == {"make": "cached", "use": "done"}, record
    assert cache.load_stage_outputs(record["id"], "use")["area"] == 9


def test_resume_after_a_stage_failure(tmp_path, mlflow_client):
    flag = tmp_path / "broken"
    flag.write_text("1")
    nb = make_notebook(tmp_path / "r.ipynb", [
        ("import os", ["setup"]),
        ("a = 21", ["stage:one"]),
        (f"assert not os.path.exists({str(flag)!r}), 'broken'\nb = a * 2", ["stage:two"]),
        ("c = b + 1", ["stage:three"]),
    ])
    failed = api.run(nb)
    assert _statuses(failed) == {"one": "done", "two": "failed", "three": "skipped"}
    flag.unlink()
    resumed = api.run(nb, RunOptions(resume_from=failed["id"]))
    assert _statuses(resumed) == {"one": "cached", "two": "done", "three": "done"}
    parent = mlflow_client.get_run(resumed["mlflow_run_id"])
    assert parent.data.tags["nb2prod.resumed_from"] == failed["id"]


def test_resume_after_sigkill_of_the_runner(tmp_path):
    nb = make_notebook(tmp_path / "k.ipynb", [
        ("import time", ["setup"]),
        ("a = 1", ["stage:fast"]),
        ("time.sleep(60)\nb = a", ["stage:slow"]),
    ])
    proc = subprocess.Popen([sys.executable, "-m", "nb2prod", "run", str(nb), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    run_id = None
    while time.time() < deadline:
        runs = api.list_runs(nb)
        if runs and runs[0]["stages"]["slow"]["status"] == "running":
            run_id = runs[0]["id"]
            break
        time.sleep(0.3)
    assert run_id, "the run never reached the slow stage"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert api.get_run(run_id)["status"] == "interrupted"
    nb_json = json.loads(nb.read_text())
    nb_json["cells"][2]["source"] = "b = a"
    nb.write_text(json.dumps(nb_json))
    resumed = api.run(nb, RunOptions(resume_from=run_id))
    assert _statuses(resumed) == {"fast": "cached", "slow": "done"}


def test_large_arrays_are_memory_mapped_and_evicted(tmp_path, monkeypatch):
    directory = cache.cache_dir(str(tmp_path / "c"))  # created and tagged as nb2prod's: eviction works there only
    big = np.arange(2_000_000, dtype=np.float64)
    cache.write(directory, "a" * 64, {"x": big}, {"stage": "s", "run_id": "r"})
    loaded = cache.load(directory, "a" * 64)["x"]
    assert not loaded.flags.writeable and np.array_equal(loaded, big)
    monkeypatch.setenv("NB2PROD_CACHE_MAX_BYTES", str(big.nbytes + 1000))
    cache.write(directory, "b" * 64, {"x": big + 1}, {"stage": "s", "run_id": "r"})
    assert [e["key"] for e in cache.entries(directory)] == ["b" * 64]


def test_cache_cli_ls_info_clear(chain, tmp_path):
    from tests.conftest import run_cli

    directory = tmp_path / "own-cache"
    api.run(chain, RunOptions(cache_dir=str(directory)))
    listing = run_cli("cache", "ls", "--json", "--cache-dir", str(directory))
    assert listing.returncode == 0
    assert sorted(e["stage"] for e in json.loads(listing.stdout)) == ["first", "second", "side", "third"]
    info = run_cli("cache", "info", "--cache-dir", str(directory))
    assert "entries:  4" in info.stdout
    cleared = run_cli("cache", "clear", "--cache-dir", str(directory))
    assert "removed 4" in cleared.stdout and cache.entries(directory) == []


def test_leaf_stage_values_are_stored_for_pull(chain):
    record = api.run(chain, RunOptions(no_cache=True))
    third = cache.load_stage_outputs(record["id"], "third")
    assert third == {"c": 20}  # a leaf stage: everything it bound, not only what others read
    assert cache.load_stage_outputs(record["id"], "second") == {"b": [0, 2, 4, 6, 8]}


@pytest.fixture
def train_evaluate(tmp_path):
    return make_notebook(tmp_path / "te.ipynb", [
        ("n = 200", ["parameters"]),
        ("data = list(range(n))  # train_evaluate", ["stage:train"]),
        ("total = sum(data)", ["stage:evaluate"]),
    ])


def test_a_stage_run_stores_its_output_under_what_it_consumed(train_evaluate):
    api.run(train_evaluate, RunOptions(parameters={"n": 200}))
    partial = api.run(train_evaluate, RunOptions(parameters={"n": 500}, stages=["evaluate"]))
    assert _statuses(partial) == {"train": "cached", "evaluate": "done"}
    assert cache.load_stage_outputs(partial["id"], "evaluate") == {"total": sum(range(200))}  # train of n=200
    full = api.run(train_evaluate, RunOptions(parameters={"n": 500}))
    assert _statuses(full) == {"train": "done", "evaluate": "done"}  # no hit on the partial run's output
    assert cache.load_stage_outputs(full["id"], "evaluate") == {"total": sum(range(500))}
    again = api.run(train_evaluate, RunOptions(parameters={"n": 200}))
    assert _statuses(again) == {"train": "cached", "evaluate": "cached"}  # same inputs as the partial run


def test_a_resumed_run_stores_its_outputs_under_what_they_consumed(tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("1")
    nb = make_notebook(tmp_path / "rk.ipynb", [
        ("n = 200", ["parameters"]),
        ("import os", ["setup"]),
        ("data = list(range(n))  # resume keys", ["stage:train"]),
        (f"assert not os.path.exists({str(flag)!r})\ntotal = sum(data)", ["stage:evaluate"]),
    ])
    failed = api.run(nb, RunOptions(parameters={"n": 200}))
    assert _statuses(failed) == {"train": "done", "evaluate": "failed"}
    flag.unlink()
    resumed = api.run(nb, RunOptions(parameters={"n": 500}, resume_from=failed["id"]))
    assert _statuses(resumed) == {"train": "cached", "evaluate": "done"}
    assert cache.load_stage_outputs(resumed["id"], "evaluate") == {"total": sum(range(200))}
    full = api.run(nb, RunOptions(parameters={"n": 500}))
    assert _statuses(full) == {"train": "done", "evaluate": "done"}
    assert cache.load_stage_outputs(full["id"], "evaluate") == {"total": sum(range(500))}


