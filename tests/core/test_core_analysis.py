"""Data flow of one cell: what it reads, (re)defines and mutates; scoping; function globals."""

from __future__ import annotations

import pytest

from nb2prod.core.analysis import (MUTATING_METHODS, analyze, ignore_module_mutations, imported_modules,
                                   printed_names)


@pytest.mark.parametrize("method", sorted(MUTATING_METHODS))
def test_each_mutating_method_redefines_its_object(method):
    flow = analyze(f"obj.{method}(1)")
    assert flow.reads == ["obj"] and "obj" in flow.defines and "obj" in flow.mutates


@pytest.mark.parametrize("code, name", [
    ("df.fillna(0, inplace=True)", "df"),
    ("df['a'].clip(lower=0, inplace=True)", "df"),
    ("df.reset_index(drop=True, inplace=True)", "df"),
    ("df.a = 1", "df"),
    ("df['col'] = 1", "df"),
    ("cfg.section.key = 2", "cfg"),
    ("grid[0][1] = 2", "grid"),
    ("self_made.parts.append(1)", "self_made"),
    ("model.fit(X, y)", "model"),
])
def test_in_place_mutations_read_and_redefine(code, name):
    flow = analyze(code)
    assert name in flow.reads and name in flow.defines and name in flow.mutates


def test_inplace_false_and_pure_methods_do_not_mutate():
    for code in ("df.fillna(0, inplace=False)", "df2 = df.dropna()", "model.predict(X)", "obj.copy()"):
        assert analyze(code).mutates == set(), code


@pytest.mark.parametrize("code, reads, defines", [
    ("x = 1", [], {"x"}),
    ("x = y + 1", ["y"], {"x"}),
    ("a, (b, *c) = t", ["t"], {"a", "b", "c"}),
    ("n += 1", ["n"], {"n"}),
    ("total -= step", ["step", "total"], {"total"}),
    ("del q", [], {"q"}),
    ("import os.path", [], {"os"}),
    ("import numpy as np", [], {"np"}),
    ("from a import b as c", [], {"c"}),
    ("def f(v):\n    return v", [], {"f"}),
    ("class K:\n    pass", [], {"K"}),
    ("for k in items:\n    seen = k", ["items"], {"k", "seen"}),
    ("with open(p) as fh:\n    text = fh.read()", ["open", "p"], {"fh", "text"}),
    ("try:\n    v = 1\nexcept ValueError as e:\n    v = 2", ["ValueError"], {"v", "e"}),
    ("if cond:\n    a = 1\nelse:\n    b = 2", ["cond"], {"a", "b"}),
    ("x = x + 1", ["x"], {"x"}),
    ("print(u)\nu = 1", ["print", "u"], {"u"}),
    ("u = 1\nprint(u)", ["print"], {"u"}),
    ("x: int = y", ["int", "y"], {"x"}),
    ("match v:\n    case [1, *rest]:\n        pass\n    case {'k': kk}:\n        pass", ["v"], {"rest", "kk"}),
])
def test_reads_and_defines(code, reads, defines):
    flow = analyze(code)
    assert sorted(flow.reads) == sorted(reads) and flow.defines == defines


@pytest.mark.parametrize("code, reads, defines", [
    ("squares = [i * i for i in range(n)]", ["range", "n"], {"squares"}),
    ("squares = [i for i in range(3)]\nleak = i", ["range", "i"], {"squares", "leak"}),
    ("d = {k: v for k, v in pairs if v > lo}", ["pairs", "lo"], {"d"}),
    ("g = sum(x for row in m for x in row)", ["sum", "m"], {"g"}),
    ("f = lambda a, *r, k=dflt, **kw: a + b + k", ["dflt", "b"], {"f"}),
    ("hits = [y := v for v in vs]", ["vs"], {"hits", "y"}),
])
def test_comprehension_and_lambda_scoping(code, reads, defines):
    flow = analyze(code)
    assert sorted(flow.reads) == sorted(reads) and flow.defines == defines


def test_function_defaults_decorators_and_annotations_are_read_at_definition():
    flow = analyze("@deco\ndef f(a: T = default, *, k=kd) -> R:\n    return a + hidden")
    assert sorted(flow.reads) == ["R", "T", "deco", "default", "kd"] and flow.defines == {"f"}


def test_function_free_globals_are_recorded_not_read():
    flow = analyze("def f(a):\n    local = a + scale\n    return helper(local)\n"
                   "def g():\n    def inner():\n        return offset\n    return inner()")
    assert flow.reads == [] and flow.functions == {"f": {"scale", "helper"}, "g": {"offset"}}


def test_class_body_runs_at_definition_methods_do_not():
    flow = analyze("class M(Base):\n    size = N\n    doubled = size * 2\n    def m(self):\n        return later")
    assert sorted(flow.reads) == ["Base", "N"] and flow.defines == {"M"} and "later" in flow.functions["M"]


def test_module_mutations_do_not_define_the_module():
    setup, stage = analyze("import sys\nimport matplotlib.pyplot as plt"), analyze(
        "sys.path.append('..')\nplt.rcParams.update({})\ndata = [1]\ndata.append(2)")
    ignore_module_mutations([setup, stage])
    assert stage.defines == {"data"} and stage.mutates == {"data"}


def test_star_import_and_nondeterminism_are_noted():
    flow = analyze("from math import *\nimport time\nt = time.time()")
    assert flow.star_import and flow.nondeterministic == ["time.time"]


def test_printed_names_of_a_kale_metrics_cell():
    assert printed_names("print(acc)\nprint(loss, f1)\nprint('text')\nx = 1") == ["acc", "loss", "f1"]


def test_imported_modules_are_what_the_cell_imports_as_it_runs():
    code = ("import numpy as np, os.path\nfrom sklearn.metrics import accuracy_score\nfrom . import sibling\n"
            "try:\n    import ujson\nexcept ImportError:\n    pass\n"
            "def later():\n    import torch\nclass K:\n    import jax\n")
    assert imported_modules(code) == {"numpy", "os.path", "sklearn.metrics", "sklearn.metrics.accuracy_score",
                                      "ujson"}
    assert imported_modules("import (") == set()
