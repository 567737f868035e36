"""Notebook → spec: stage assignment, edges and inputs in both dialects, every error and warning."""

from __future__ import annotations

import pytest

from tests.core.conftest import dag


# --- nb2prod dialect --------------------------------------------------------------------------

def test_no_stage_tags_is_one_main_stage(build):
    spec = build([("%matplotlib inline", []), ("x = 1", []), ("y = x", []), ("print(y)", ["skip"])])
    assert dag(spec) == {"main": ([1, 2], [], [])} and spec.ok


def test_untagged_cells_before_the_first_stage_form_main(build):
    spec = build([("import os\nbase = os.sep", []), ("x = base", ["stage:a"]), ("y = x", [])])
    assert dag(spec) == {"main": ([0], [], []), "a": ([1, 2], ["base"], ["main"])}
    assert spec.stages["main"].outputs == ["base"]


def test_nearest_earlier_definer_is_the_producer(build):
    spec = build([("x = 1", ["stage:a"]), ("x = x + 1", ["stage:b"]), ("y = x", ["stage:c"])])
    assert dag(spec) == {"a": ([0], [], []), "b": ([1], ["x"], ["a"]), "c": ([2], ["x"], ["b"])}


def test_mutation_makes_the_mutating_stage_the_producer(build):
    spec = build([("import pandas as pd", ["setup"]), ("df = pd.DataFrame({'a': [1, None]})", ["stage:load"]),
                  ("df.fillna(0, inplace=True)", ["stage:clean"]), ("rows = []\nfor r in df.a:\n    rows.append(r)",
                                                                    ["stage:use"])])
    assert dag(spec)["use"] == ([3], ["df"], ["clean"])
    assert spec.stages["clean"].mutated_inputs == ["df"]


def test_parameters_and_setup_names_are_not_inputs(build):
    spec = build([("import math", ["setup"]), ("n = 2", ["parameters"]), ("x = math.sqrt(n)", ["stage:a"])])
    assert dag(spec) == {"a": ([2], [], [])} and spec.stages["a"].parameters_read == ["n"]


def test_outputs_are_only_names_read_downstream(build):
    spec = build([("a = 1\nb = 2\ntmp = 3", ["stage:s1"]), ("c = a", ["stage:s2"]), ("d = b + c", ["stage:s3"])])
    assert spec.stages["s1"].outputs == ["a", "b"] and spec.stages["s2"].outputs == ["c"]


def test_helper_function_free_globals_count_as_reads(build):
    spec = build([("scale = 3", ["stage:a"]), ("def f(v):\n    return v * scale", ["stage:b"]),
                  ("y = f(2)", ["stage:c"])])
    assert dag(spec)["c"] == ([2], ["f", "scale"], ["a", "b"])
    assert dag(spec)["b"] == ([1], [], [])  # defining f reads nothing


def test_class_body_reads_at_definition(build):
    spec = build([("N = 3", ["stage:a"]), ("class M:\n    size = N", ["stage:b"])])
    assert dag(spec)["b"] == ([1], ["N"], ["a"])


def test_after_adds_an_edge(build):
    spec = build([("open('f', 'w').write('x')", ["stage:write"]), ("t = open('f').read()", ["stage:read", "after:write"])])
    assert spec.edges == [("write", "read")] and spec.stages["read"].after == ["write"]


def test_settings_accumulate_over_the_stage_cells(build):
    spec = build([("x = 1", ["stage:a", "retries:2"]), ("y = 2", ["gpu", "timeout:5"]), ("z = 3", ["nocache"])])
    s = spec.stages["a"]
    assert (s.retries, s.timeout, s.nocache, s.resources) == (2, 5.0, True, {"gpu": 1.0})


def test_metrics_tag_lists_the_names_bound_in_that_cell(build):
    spec = build([("x = 1", ["stage:a"]), ("acc = 0.9\nloss = 0.1", ["metrics"])])
    assert spec.stages["a"].metrics == ["acc", "loss"]


def test_stage_magic_header_works_like_tags(build):
    spec = build([("%%stage load --retries 2\nx = 1", []), ("%%stage use --after load --gpu\ny = 2", [])])
    assert spec.edges == [("load", "use")] and spec.stages["load"].retries == 2
    assert spec.stages["use"].resources == {"gpu": 1.0}


def test_magics_only_first_cell_makes_no_main_stage(build):
    assert list(build([("%load_ext nb2prod", []), ("x = 1", ["stage:a"])]).stages) == ["a"]


def test_nondeterministic_call_warns_unless_nocache(build):
    spec = build([("import random\nv = random.random()", ["stage:a"]), ("import time\nt = time.time()", ["stage:b", "nocache"])])
    assert [w.stage for w in spec.warnings if "not deterministic" in w.message] == ["a"]


def test_stages_are_ordered_topologically(build):
    spec = build([("b = 1", ["stage:second", "after:first"]), ("a = 1", ["stage:first"])])
    assert list(spec.stages) == ["first", "second"] and spec.stages["second"].upstream == ["first"]


# --- Kale dialect -------------------------------------------------------------------------------

def test_kale_edges_come_only_from_prev(build):
    spec = build([("a = 1", ["step:one"]), ("b = a", ["step:two"]), ("c = a", ["step:three", "prev:one"])])
    assert spec.edges == [("one", "three")] and spec.stages["three"].inputs == ["a"]
    assert spec.stages["two"].inputs == []
    warning = next(w for w in spec.warnings if w.stage == "two")
    assert "not an ancestor" in warning.message and "prev:one" in warning.message


def test_kale_inputs_come_from_ancestors_only(build):
    spec = build([("x = 1", ["step:a"]), ("x = 2", ["step:b"]), ("y = x", ["step:c", "prev:a"])])
    assert dag(spec)["c"] == ([2], ["x"], ["a"])


def test_kale_cells_before_the_first_step_are_in_no_step(build):
    spec = build([("early = 1", []), ("x = 1", ["step:a"])])
    assert dag(spec) == {"a": ([1], [], [])}
    spec = build([("early = 1", []), ("x = early", ["step:a"])])
    assert "before the first step" in spec.errors[0].message


def test_kale_same_step_name_again_merges(build):
    spec = build([("x = 1", ["step:a"]), ("y = x", ["step:b", "prev:a"]), ("z = 1", ["step:a"])])
    assert spec.ok and dag(spec)["a"] == ([0, 2], [], [])


@pytest.mark.parametrize("tag", ["block:", "step:"])
def test_kale_bare_block_continues_the_previous_step(build, tag):
    spec = build([("x = 1", ["step:a"]), ("y = 2", [tag]), ("z = y", ["step:b", "prev:a"])])
    assert dag(spec) == {"a": ([0, 1], [], []), "b": ([2], ["y"], ["a"])}


def test_kale_legacy_block_names_a_step(build):
    assert list(build([("x = 1", ["block:load"])]).stages) == ["load"]


def test_kale_untagged_cells_continue_imports_and_functions(build):
    spec = build([("import math", ["imports"]), ("import json", []), ("def f():\n    return 1", ["functions"]),
                  ("def g():\n    return 2", []), ("x = f() + g() + math.pi\ns = json.dumps(x)", ["step:a"])])
    assert spec.ok and spec.setup_cells == [0, 1, 2, 3]


def test_kale_imports_run_before_functions(build):
    spec = build([("def f():\n    return math.pi", ["functions"]), ("import math", ["imports"]), ("x = f()", ["step:a"])])
    assert spec.setup_cells == [1, 0]


def test_kale_prev_only_on_the_cell_that_starts_a_step(build):
    spec = build([("x = 1", ["step:a"]), ("y = 1", ["step:b"]), ("z = 1", ["step:b", "prev:a"])])
    assert spec.edges == [] and "only on the cell that starts a step" in spec.warnings[0].message


def test_kale_pipeline_metrics_go_to_the_defining_step(build):
    spec = build([("acc = 0.5", ["step:train"]), ("acc2 = acc * 2", ["step:eval", "prev:train"]),
                  ("print(acc)\nprint(acc2)", ["pipeline-metrics"])])
    assert spec.stages["train"].metrics == ["acc"] and spec.stages["eval"].metrics == ["acc2"]


def test_kale_gpu_limit_and_ignored_tags(build):
    spec = build([("x = 1", ["step:a", "limit:nvidia.com/gpu:2", "annotation:k:v", "label:k:v"])])
    assert spec.ok and spec.stages["a"].resources == {"gpu": 2.0}


def test_kale_functions_defined_in_a_step_read_their_free_names(build):
    spec = build([("w = 2", ["step:a"]), ("def f(v):\n    return v * w", ["step:b", "prev:a"])])
    assert dag(spec)["b"] == ([1], ["w"], ["a"])


# --- errors and warnings ----------------------------------------------------------------------

@pytest.mark.parametrize("cells, fragment, cell_index, stage", [
    ([("a = 1", ["stage:x", "after:y"]), ("b = a", ["stage:y"])], "cycle: x -> y -> x", None, "x"),
    ([("a = 1", ["stage:x", "after:nope"])], "unknown stage 'nope' (known stages: x)", 0, "x"),
    ([("a = 1", ["step:x", "prev:nope"])], "unknown stage 'nope'", 0, "x"),
    ([("a = 1", ["stage:x"]), ("b = 1", ["stage:x"])], "duplicate stage name 'x' (first used in cell 0)", 1, "x"),
    ([("a = ghost", ["stage:x"])], "reads 'ghost', which no upstream stage, parameter, setup cell", 0, "x"),
    ([("a = b", ["stage:x"]), ("b = 1", ["stage:y"])], "first defined in later stage 'y'", 0, "x"),
    ([("b = 1", ["skip"]), ("a = b", ["stage:x"])], "defined only in a cell tagged `skip`", 1, "x"),
    ([("a = 1", ["stage:x"]), ("b = a", ["step:y"])], "mixes nb2prod tags (stage:) with Kale tags", 1, None),
    ([("!pip install x", ["stage:x"])], "never shells out", 0, "x"),
    ([("%%bash\nls", [])], "never shells out", 0, "main"),
    ([("%load_ext sql", ["stage:x"])], "cannot run outside IPython", 0, "x"),
    ([("x = 1", ["stage:bad name"])], "tag 'stage:bad name'", 0, "main"),
    ([("%%stage x --bogus\na = 1", [])], "bad %%stage header: unrecognized arguments: --bogus. Usage:", 0, "main"),
    ([("x = (", ["stage:x"])], "syntax error", 0, "x"),
    ([("print(acc)", ["pipeline-metrics"]), ("x = 1", ["step:a"])], "pipeline-metrics prints 'acc'", 0, None),
])
def test_errors_name_cell_stage_and_fix(build, cells, fragment, cell_index, stage):
    spec = build(cells)
    error = next((e for e in spec.errors if fragment in e.message), None)
    assert error is not None, [e.message for e in spec.errors]
    assert (error.cell_index, error.stage) == (cell_index, stage)
    if cell_index is not None:
        assert error.cell_id == f"c{cell_index}"


def test_shell_in_a_skip_cell_is_fine(build):
    assert build([("!pip install x", ["skip"]), ("x = 1", [])]).ok


@pytest.mark.parametrize("cell", [("%%stage load --bogus\nx = 1", ["skip"]), ("%%stage\nx = 1", ["skip"]),
                                  ("x = 1", ["skip", "stage:bad name", "retries:many"])])
def test_a_skipped_cell_is_never_read_not_even_its_header_or_tags(build, cell):
    spec = build([cell, ("y = 2", ["stage:only"])])
    assert spec.ok, [e.message for e in spec.errors]
    assert list(spec.stages) == ["only"]


def test_kale_metrics_may_print_pipeline_parameters(build):
    spec = build([("d1 = 5\nd2 = 6", ["pipeline-parameters"]), ("m = d1 * d2", ["step:make"]),
                  ("total = m + 1", ["step:add", "prev:make"]), ("print(d1)\nprint(total)", ["pipeline-metrics"])])
    assert spec.ok, [e.message for e in spec.errors]
    assert spec.stages["add"].metrics == ["d1", "total"]


@pytest.mark.parametrize("cells, fragment", [
    ([("a = 1\nprint(a)", ["parameters"])], "not NAME = literal"),
    ([("a = 1", ["parameters"]), ("b = 2", ["parameters"])], "second parameters cell"),
    ([("a = 1", ["step:x"]), ("b = a", ["step:y"])], "not an ancestor"),
    ([("n = 1", ["pipeline-parameters"]), ("m = 2", []), ("x = n", ["step:a"])], "merges this cell into pipeline-parameters"),
])
def test_warnings(build, cells, fragment):
    assert any(fragment in w.message for w in build(cells).warnings)


# --- parameters cell typing --------------------------------------------------------------------

@pytest.mark.parametrize("source, kind, default", [
    ("p = 3", "int", 3), ("p = -3", "int", -3), ("p = 0.5", "float", 0.5), ("p = 1e3", "float", 1000.0),
    ("p = True", "bool", True), ("p = 'x'", "str", "x"), ("p = None", "None", None),
    ("p = [1, 'a']", "list", [1, "a"]), ("p = {'k': [1]}", "dict", {"k": [1]}),
    ("p: int = 4", "int", 4),
    ("p = (1, 2)", "any", [1, 2]), ("p = {1, 2}", "any", [1, 2]), ("p = [{1}]", "any", [[1]]),
    ("p = {1: 'a'}", "any", {"1": "a"}), ("p = len('ab')", "any", None), ("import os as p", "any", None),
    ("p, q = 1, 2", "any", None),
])
def test_parameter_types(build, source, kind, default):
    param = build([(source, ["parameters"]), ("x = 1", [])]).parameters["p"]
    assert (param.type, param.default) == (kind, default)


@pytest.mark.parametrize("cells", [[], [("n = 1", ["parameters"]), ("import os", ["setup"]), ("x = 1", ["skip"])]])
def test_a_notebook_with_nothing_to_run_is_warned_about(build, cells):
    spec = build(cells)
    assert not spec.stages and not spec.errors
    assert any(w.message.startswith("the pipeline has no stage") for w in spec.warnings)
