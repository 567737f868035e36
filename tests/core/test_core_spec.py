"""Notebook → spec from tags: stage settings, the %%stage header, roles, the Kale dialect, magics."""

from __future__ import annotations

import json

import pytest

from nb2prod.core.builder import build_spec
from tests.conftest import make_notebook

def spec_of(tmp_path, cells):
    return build_spec(make_notebook(tmp_path / "nb.ipynb", cells))


def summary(spec):
    return {n: {"cells": s.cells, "inputs": sorted(s.inputs), "upstream": s.upstream} for n, s in spec.stages.items()}


@pytest.mark.parametrize("tags, field, expected", [
    (["stage:a", "after:b"], "after", ["b"]),
    (["stage:a", "retries:3"], "retries", 3),
    (["stage:a", "timeout:2.5"], "timeout", 2.5),
    (["stage:a", "nocache"], "nocache", True),
    (["stage:a", "gpu"], "resources", {"gpu": 1.0}),
    (["stage:a", "resources:cpu=2", "resources:gpu=1", "resources:memory=1GiB", "resources:edge=1"], "resources",
     {"cpu": 2.0, "gpu": 1.0, "memory": 2**30, "edge": 1.0}),
    (["stage:a", "inputs:data/*.csv"], "input_files", ["data/*.csv"]),
    (["step:a", "limit:nvidia.com/gpu:2"], "resources", {"gpu": 2.0}),
])
def test_stage_settings_from_tags(tmp_path, tags, field, expected):
    cells = [("x = 1", tags)] + ([("y = 2", ["stage:b"])] if "after:b" in tags else [])
    assert getattr(spec_of(tmp_path, cells).stages["a"], field) == expected


def test_comma_separated_resources_tag(tmp_path):
    # nbformat's schema forbids commas in tags, but notebooks that carry them are still read
    path = make_notebook(tmp_path / "nb.ipynb", [("x = 1", ["stage:a"])])
    nb = json.loads(path.read_text())
    nb["cells"][0]["metadata"]["tags"].append("resources:cpu=2,memory=1G")
    path.write_text(json.dumps(nb))
    assert build_spec(path).stages["a"].resources == {"cpu": 2.0, "memory": 10**9}


def test_stage_magic_header_is_read_like_tags(tmp_path):
    spec = spec_of(tmp_path, [("%%stage load --retries 2 --gpu --memory 512M\nx = 1", []),
                              ("%%stage use --after load --timeout 9 --nocache\ny = x", [])])
    load, use = spec.stages["load"], spec.stages["use"]
    assert (load.retries, load.resources) == (2, {"gpu": 1.0, "memory": 512_000_000})
    assert (use.timeout, use.nocache, use.inputs) == (9.0, True, ["x"])


def test_untagged_notebook_is_one_main_stage_and_setup_skip_parameters(tmp_path):
    spec = spec_of(tmp_path, [("import os", ["setup"]), ("n = 3\nname = 'a'\nflag = True\nr = 0.5\nz = None\n"
                                                       "l = [1]\nd = {'a': 1}\nimport math\nq = math.pi", ["parameters"]),
                              ("x = n", []), ("y = os.sep + name", []), ("print(x)", ["skip"])])
    assert list(spec.stages) == ["main"] and spec.stages["main"].cells == [2, 3]
    assert {p.name: p.type for p in spec.parameters.values()} == {
        "n": "int", "name": "str", "flag": "bool", "r": "float", "z": "None", "l": "list", "d": "dict",
        "math": "any", "q": "any"}
    assert any("parameters cell" in w.message for w in spec.warnings)


def test_kale_dialect_golden(tmp_path):
    spec = spec_of(tmp_path, [
        ("import numpy as np", ["imports"]), ("def twice(v):\n    return 2 * v", ["functions"]),
        ("n = 4", ["pipeline-parameters"]), ("ignored = 1", []),
        ("a = np.arange(n)", ["step:load"]), ("b = twice(a)", ["step:double", "prev:load"]),
        ("more = 1", ["block:"]), ("c = a.sum()", ["step:total", "prev:load"]),
        ("d = b.sum() + c + more", ["step:report", "prev:double", "prev:total"]),
        ("print(d)", ["pipeline-metrics"]), ("oops = 1", ["skip"]),
    ])
    assert spec.dialect == "kale" and not spec.errors
    assert summary(spec) == {
        "load": {"cells": [4], "inputs": [], "upstream": []},
        "double": {"cells": [5, 6], "inputs": ["a"], "upstream": ["load"]},
        "total": {"cells": [7], "inputs": ["a"], "upstream": ["load"]},
        "report": {"cells": [8], "inputs": ["b", "c", "more"], "upstream": ["double", "total"]},
    }
    # as in Kale, the untagged cell 3 continues the pipeline-parameters block above it (run as setup)
    assert spec.setup_cells == [0, 1, 3] and spec.stages["report"].metrics == ["d"]


@pytest.mark.parametrize("cells, fragment", [  # the other errors: tests/core/test_core_builder.py
    ([("a = 1", ["stage:a", "retries:x"])], "whole number"),
    ([("%who_knows\na = 1", ["stage:a"])], "cannot run outside IPython"),
])
def test_validation_errors_name_the_cell(tmp_path, cells, fragment):
    spec = spec_of(tmp_path, cells)
    assert any(fragment in e.message for e in spec.errors), [e.message for e in spec.errors]
    assert all(e.cell_index is not None or "cycle" in e.message for e in spec.errors)


def test_magics_dropped_or_unwrapped(tmp_path):
    spec = spec_of(tmp_path, [("%matplotlib inline\n%load_ext nb2prod\n%time x = 1\ny?", ["stage:a"])])
    assert not spec.errors and spec.cells[0].source.splitlines()[2] == "x = 1"


def test_notebook_function_globals_are_reads(tmp_path):
    spec = spec_of(tmp_path, [("def scaled(v):\n    return v * factor", ["setup"]), ("factor = 3", ["stage:a"]),
                              ("y = scaled(2)", ["stage:b"])])
    assert spec.stages["b"].inputs == ["factor"] and spec.stages["b"].upstream == ["a"]
