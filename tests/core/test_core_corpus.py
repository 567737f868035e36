"""The corpus against golden DAGs (steps, edges, inputs per step), and notebooks nobody tuned for.

Regenerate the goldens after an intended change: ``NB2PROD_REGEN_GOLDEN=1 pytest tests/core/test_core_corpus.py``,
then review the diff of ``tests/golden/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nb2prod.core.builder import build_spec
from nb2prod.core.spec import PipelineSpec

TESTS = Path(__file__).resolve().parents[1]
CORPUS, GOLDEN = TESTS / "corpus", TESTS / "golden"
REGEN = os.environ.get("NB2PROD_REGEN_GOLDEN") == "1"
GOLDEN_NOTEBOOKS = sorted(p for p in CORPUS.glob("*.ipynb") if not p.stem.startswith(("err_not_json", "err_nbformat")))


def summary(spec: PipelineSpec) -> dict:
    """What a golden records: the DAG and its data flow, not paths or wording of every message."""
    return {
        "dialect": spec.dialect,
        "parameters": {n: {"type": p.type, "default": p.default} for n, p in spec.parameters.items()},
        "setup_cells": spec.setup_cells,
        "steps": {n: {"cells": s.cells, "inputs": sorted(s.inputs), "outputs": s.outputs, "upstream": s.upstream,
                      "resources": s.resources, "metrics": s.metrics} for n, s in spec.stages.items()},
        "edges": [list(e) for e in spec.edges],
        "warnings": [[w.cell_index, w.stage] for w in spec.warnings],
        "errors": [[e.cell_index, e.stage, e.message] for e in spec.errors],
    }


@pytest.mark.parametrize("path", GOLDEN_NOTEBOOKS, ids=lambda p: p.stem)
def test_golden(path):
    golden = GOLDEN / f"{path.stem}.json"
    got = summary(build_spec(path))
    if REGEN:
        golden.write_text(json.dumps(got, indent=1) + "\n")
    assert golden.exists(), f"no golden for {path.name}; run with NB2PROD_REGEN_GOLDEN=1"
    assert got == json.loads(golden.read_text())


def test_every_golden_has_its_notebook():
    assert {p.stem for p in GOLDEN.glob("*.json")} == {p.stem for p in GOLDEN_NOTEBOOKS}


def test_kale_basic_follows_kales_rules():
    spec = build_spec(CORPUS / "kale_basic.ipynb")
    assert spec.ok and spec.dialect == "kale"
    # edges only from prev: (the inferred ones are implied by them)
    prev = {("load_data", "clean_data"), ("clean_data", "split"), ("split", "train"), ("train", "evaluate"),
            ("split", "evaluate"), ("load_data", "evaluate")}
    assert set(spec.edges) == prev
    assert {n: sorted(s.inputs) for n, s in spec.stages.items()} == {
        "load_data": [], "clean_data": ["raw"], "split": ["clean"], "train": ["train_x"],
        "evaluate": ["counts", "model", "test_x"]}
    # imports (+ the untagged cell continuing it) and functions run as setup, imports first
    assert spec.setup_cells == [1, 2, 3, 5]
    assert spec.stages["train"].resources == {"gpu": 1.0}
    assert spec.stages["evaluate"].metrics == ["accuracy", "n_distinct"]
    assert set(spec.parameters) == {"n_rows", "factor", "seed"}


def test_kale_legacy_blocks():
    spec = build_spec(CORPUS / "kale_legacy.ipynb")
    assert spec.ok
    assert spec.stages["make_base"].cells == [2, 3, 5]  # bare block: and the repeated step name merge
    assert 0 not in {c for s in spec.stages.values() for c in s.cells}  # before the first step: no step
    assert spec.stages["sum_up"].inputs == ["ratio", "base"]


def test_kale_functions_carry_their_free_names():
    spec = build_spec(CORPUS / "kale_functions.ipynb")
    # helpers defines functions over `weighted` (as Kale/pyflakes: an input); report calls summary(), whose
    # free names (transitively) come from the ancestors that define them
    assert spec.stages["helpers"].inputs == ["weighted"]
    assert sorted(spec.stages["report"].inputs) == ["above", "data", "summary", "weighted", "weights"]
    assert spec.stages["stats"].inputs == [] and spec.warnings[0].stage == "stats"


# --- notebooks nobody tuned for ---------------------------------------------------------------

def test_untuned_sales_gives_a_sensible_dag():
    spec = build_spec(CORPUS / "untuned_sales.ipynb")
    assert spec.ok, [str(e) for e in spec.errors]
    inputs = {n: set(s.inputs) for n, s in spec.stages.items()}
    assert inputs["clean"] == {"df"} and spec.stages["clean"].mutated_inputs == ["df"]  # fillna(inplace=True)
    assert {"df", "add_tax"} <= inputs["summarize"]  # helper defined in one stage, used in another
    assert ("clean", "summarize") in spec.edges and ("helpers", "summarize") in spec.edges
    assert ("load", "summarize") not in spec.edges  # the nearest (re)definer of df is clean
    assert {"gross", "top_regions", "plt"} <= inputs["report"]
    assert spec.stages["helpers"].upstream == []


def test_untuned_iris_gives_a_sensible_dag():
    spec = build_spec(CORPUS / "untuned_iris.ipynb")
    assert spec.ok, [str(e) for e in spec.errors]
    assert list(spec.stages) == ["main", "data", "split", "train", "evaluate"]
    assert {"prep", "scaler", "X_train", "y_train"} <= set(spec.stages["train"].inputs)  # prep() uses scaler
    assert {"model", "X_test", "y_test"} <= set(spec.stages["evaluate"].inputs)
    assert spec.stages["evaluate"].metrics == ["accuracy"]
    assert set(spec.stages["split"].parameters_read) == {"test_size", "random_state"}
    assert "C" in spec.stages["train"].parameters_read


def test_untuned_untagged_is_one_clean_main_stage():
    spec = build_spec(CORPUS / "untuned_untagged.ipynb")
    assert spec.ok and list(spec.stages) == ["main"] and spec.stages["main"].cells == [0, 1, 2, 3, 4]
    assert "%" not in "".join(spec.cells[i].source for i in spec.stages["main"].cells)


def test_benchmark_notebook_is_valid(tmp_path):
    import importlib.util

    spec_file = importlib.util.spec_from_file_location("bench_parse", TESTS.parent / "benchmarks" / "bench_parse.py")
    bench = importlib.util.module_from_spec(spec_file)
    spec_file.loader.exec_module(bench)
    path = bench.make_notebook(tmp_path / "bench.ipynb", 300)
    assert build_spec(path).ok  # its speed is benchmarks/bench_parse.py's business, not a timed test's
