"""register:/monitor:/gate: grammar and check errors, gates, profiles and drift, JUnit — no cluster needed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from nb2prod.cli.junit import Case, write
from nb2prod.core.grammar import parse_stage_magic, parse_tags
from nb2prod.errors import UsageError
from nb2prod.mlops.drift import compare, metric_key, psi
from nb2prod.mlops.gates import Gate, evaluate, parse_gates
from nb2prod.mlops.profile import SAMPLE_ROWS, build_profile
from nb2prod.mlops.registry import PYFUNC, flavor_of


@pytest.mark.parametrize("tag, field, value", [
    ("register:best_model", "register", {"best_model": "best_model"}),
    ("register:best_model=wine-classifier", "register", {"best_model": "wine-classifier"}),
    ("register:m=team.model_v2", "register", {"m": "team.model_v2"}),
    ("monitor:X_test", "monitor", ["X_test"]),
    ("gate:accuracy>=0.9", "gates", ["accuracy>=0.9"]),
    ("gate:drift.X.max_psi <= 0.2", "gates", ["drift.X.max_psi<=0.2"]),
    ("gate:loss<1e-3", "gates", ["loss<0.001"]),
    ("gate:n==3", "gates", ["n==3"]),
])
def test_mlops_tags(tag, field, value):
    d = parse_tags([tag])
    assert d.problems == [] and getattr(d, field) == value


@pytest.mark.parametrize("tag, fragment", [
    ("register:1model", "register:VAR"), ("register:", "register:VAR"), ("register:m=bad name", "register:VAR"),
    ("monitor:X-test", "monitor:VAR names a Python variable"), ("gate:accuracy", "METRIC OP NUMBER"),
    ("gate:accuracy>=high", "METRIC OP NUMBER"), ("gate:accuracy=>0.9", "METRIC OP NUMBER"),
])
def test_malformed_mlops_tags(tag, fragment):
    problems = parse_tags([tag]).problems
    assert len(problems) == 1 and fragment in problems[0]


def test_stage_magic_register_and_monitor():
    d = parse_stage_magic("train --register model=wine --register scaler --monitor X")
    assert d.register == {"model": "wine", "scaler": "scaler"} and d.monitor == ["X"]
    with pytest.raises(ValueError, match="--monitor"):
        parse_stage_magic("train --monitor 1x")


def test_check_reports_unbound_register_and_monitor_variables(build):
    spec = build([("x = 1", ["stage:a", "register:x=m", "gate:acc>=0.5"]),
                  ("y = x", ["stage:b", "register:x", "monitor:z"]),
                  ("%%stage c --monitor y\nq = y", [])])
    messages = {(e.cell_index, e.message.split(" names")[0]) for e in spec.errors}
    assert messages == {(1, "register:x"), (1, "monitor:z"), (2, "monitor:y")}
    assert all("does not bind" in e.message and e.stage for e in spec.errors)
    assert spec.stages["a"].register == {"x": "m"} and spec.gates == ["acc>=0.5"]
    assert spec.to_dict()["gates"] == ["acc>=0.5"] and spec.to_dict()["stages"]["a"]["register"] == {"x": "m"}


def test_gates_evaluate_with_reasons():
    gates = parse_gates(["accuracy>=0.9", "loss<0.5", "accuracy>=0.9"])
    assert gates == [Gate("accuracy", ">=", 0.9), Gate("loss", "<", 0.5)]
    ok = evaluate(gates, {"accuracy": 0.91, "loss": 0.2})
    assert ok["status"] == "passed" and "accuracy 0.91 >= 0.9" in ok["reason"]
    bad = evaluate(gates, {"accuracy": 0.85})
    assert bad["status"] == "failed" and bad["reason"] == "accuracy 0.85 < 0.9; loss not logged"
    assert evaluate([], {})["status"] == "none"
    assert Gate("loss", "<=", 1).better_or_equal(0.1, 0.2) and not Gate("acc", ">", 0).better_or_equal(0.1, 0.2)
    with pytest.raises(UsageError, match="METRIC OP NUMBER"):
        parse_gates(["accuracy"])


def test_register_and_monitor_targets_are_part_of_the_cache_key(build):
    from nb2prod.core.cachekey import stage_keys

    def key(tags: list[str]) -> str:
        return stage_keys(build([("m = 1", ["stage:fit", *tags]), ("n = m", ["stage:use"])]), {})["fit"]

    plain, wine, other = key([]), key(["register:m=wine"]), key(["register:m=other"])
    assert len({plain, wine, other, key(["monitor:m"])}) == 4  # a cached stage would register / profile nothing
    assert wine == key(["register:m=wine"])


def test_failed_gate_is_the_promotion_reason_without_a_new_version(build):
    from types import SimpleNamespace

    from nb2prod.mlops.hooks import MlopsHooks

    spec = build([("m = 1", ["stage:fit", "register:m=wine", "gate:acc>=0.9"])])
    client = SimpleNamespace(log_batch=lambda *a, **k: None)
    hooks = MlopsHooks(SimpleNamespace(spec=spec, gates=[], promote="champion"), SimpleNamespace(client=client))
    promotion = hooks.finish("parent", {"acc": 0.5}, succeeded=True)["promotion"]  # fit was cached: nothing registered
    assert promotion["version"] is None and not promotion["moved"]
    assert promotion["reason"] == ("gate failed: acc 0.5 < 0.9; "
                                   "no new model version (the registering stage was cached or skipped)")


def _frame(rows: int, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"alcohol": rng.normal(13, 1, rows) + shift, "ash": rng.normal(2.4, 0.3, rows),
                         "kind": rng.choice(["red", "white", "rose"], rows),
                         "with space(%)": rng.uniform(0, 1, rows)})


def test_profile_of_a_frame_is_compact_and_typed():
    df = _frame(30_000)
    df.loc[:9, "ash"] = np.nan
    p = build_profile(df)
    ash, kind = p["columns"]["ash"], p["columns"]["kind"]
    assert p["rows"] == 30_000 and ash["missing"] == 10 and ash["count"] == 29_990
    assert len(ash["edges"]) == 9 and abs(sum(ash["frequencies"]) - 1) < 1e-9
    assert kind["type"] == "categorical" and set(kind["categories"]) == {"red", "white", "rose"}
    from nb2prod.mlops.profile import sample_of

    assert len(sample_of(p["columns"]["alcohol"])) == SAMPLE_ROWS


def test_shifted_data_drifts_and_unshifted_does_not():
    reference = build_profile(_frame(5000, seed=1))
    same = compare("X", reference, build_profile(_frame(5000, seed=2)))
    assert not same["drifted"] and same["max_psi"] < 0.05
    assert same["columns"]["alcohol"]["ks_pvalue"] > 0.001 and "chi2_pvalue" in same["columns"]["kind"]
    shifted = compare("X", reference, build_profile(_frame(5000, shift=1.5, seed=3)))
    assert shifted["drifted"] and shifted["drifted_columns"] == ["alcohol"]
    assert shifted["columns"]["alcohol"]["ks_pvalue"] < 1e-6
    assert shifted["metrics"]["drift.X.max_psi"] == shifted["max_psi"]
    assert "drift.X.with space___.psi" in shifted["metrics"]  # characters MLflow forbids become _


def test_arrays_columns_are_numbered_and_nan_counted():
    x = np.random.default_rng(0).normal(size=(1000, 3)).astype("float32")
    x[0, 1] = np.nan
    p = build_profile(x)
    assert list(p["columns"]) == ["0", "1", "2"] and p["columns"]["1"]["missing"] == 1
    x2 = x.copy()
    x2[:, 2] += 5
    assert compare("A", p, build_profile(x2))["drifted_columns"] == ["2"]
    with pytest.raises(TypeError, match="2-D"):
        build_profile(np.zeros(3))


def test_psi_floor_and_metric_names():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - 1e-4) * np.log(1 / 1e-4))
    assert metric_key("drift", "X", "a:b") == "drift.X.a_b"


def test_flavors():
    from sklearn.linear_model import LinearRegression

    assert flavor_of(LinearRegression()) == "mlflow.sklearn"
    assert flavor_of(object()) == PYFUNC


def test_junit_file_parses_back(tmp_path):
    path = tmp_path / "r.xml"
    write(path, "nb", [Case("nb.check", "check"), Case("nb.stages", "train", "failed", "cell 3: ValueError: x"),
                       Case("nb.stages", "report", "skipped", "upstream failed")])
    suite = ET.parse(path).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert cases[1].find("failure").get("message") == "cell 3: ValueError: x"
    assert cases[2].find("skipped") is not None and cases[0].find("failure") is None


def test_run_options_carry_mlops_fields_and_refuse_bad_ones():
    from nb2prod.contracts.options import RunOptions
    from nb2prod.mlops.gates import check_options

    options = RunOptions.from_dict({"gates": ["accuracy>=0.9"], "promote": "champion", "drift_threshold": 0.3,
                                    "fail_on_drift": True, "drift_reference": "previous"})
    assert RunOptions.from_dict(options.to_dict()) == options
    check_options(options)
    with pytest.raises(UsageError, match="a finite number"):
        RunOptions.from_dict({"drift_threshold": True})
    for bad, fragment in [({"gates": ["accuracy"]}, "METRIC OP NUMBER"), ({"drift_threshold": 0}, "positive"),
                          ({"promote": "a b"}, "promote alias"), ({"drift_reference": ""}, "champion, previous")]:
        with pytest.raises(UsageError, match=fragment):
            check_options(RunOptions.from_dict(bad))


def test_promote_without_register_tag_and_bad_gate_are_usage_errors(tmp_path):
    from tests.conftest import make_notebook, run_cli

    nb = make_notebook(tmp_path / "nb.ipynb", [("x = 1", ["stage:a"])])
    result = run_cli("run", str(nb), "--promote", "champion")
    assert result.returncode == 2 and "registers no model" in result.stderr
    result = run_cli("run", str(nb), "--gate", "accuracy=>0.9")
    assert result.returncode == 2 and "METRIC OP NUMBER" in result.stderr
    result = run_cli("ci", str(nb), "--gate", "nonsense")
    assert result.returncode == 2 and "METRIC OP NUMBER" in result.stderr


def test_ci_check_failure_is_a_junit_failure_without_a_run(tmp_path):
    from tests.conftest import make_notebook, run_cli

    nb = make_notebook(tmp_path / "bad.ipynb", [("y = 1", ["stage:a", "register:z"])])
    report = tmp_path / "report.xml"
    result = run_cli("ci", str(nb), "--junit", str(report))
    assert result.returncode == 1 and "does not bind" in result.stderr
    suite = ET.parse(report).getroot().find("testsuite")
    (case,) = suite.findall("testcase")
    assert case.get("name") == "check" and "does not bind" in case.find("failure").get("message")


def test_check_takes_several_notebooks(tmp_path):
    from tests.conftest import make_notebook, run_cli

    good = make_notebook(tmp_path / "good.ipynb", [("x = 1", ["stage:a"])])
    bad = make_notebook(tmp_path / "bad.ipynb", [("x = 1", ["stage:a", "monitor:q"])])
    assert run_cli("check", str(good), str(good)).returncode == 0
    result = run_cli("check", str(good), str(bad))
    assert result.returncode == 1 and "monitor:q" in result.stderr and "cell 0" in result.stderr
