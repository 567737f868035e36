"""papermill-style parameters: inference, precedence, checks against the notebook."""

from __future__ import annotations

import pytest

from nb2prod.core.params import collect_parameters, infer_value, resolved_parameters, validate_parameters
from nb2prod.errors import ParameterError


@pytest.mark.parametrize("text, value", [
    ("1", 1), ("-2", -2), ("1.5", 1.5), ("1e3", 1000.0), ("True", True), ("False", False), ("None", None),
    ("hello", "hello"), ("true", "true"), ("[1, 2]", "[1, 2]"), ("", ""),
    ("__import__('os').system('x')", "__import__('os').system('x')"), ("1; import os", "1; import os"),
])
def test_infer_value_like_papermill(text, value):
    assert infer_value(text) == value and type(infer_value(text)) is type(value)


def test_precedence_files_then_yaml_then_p_then_r(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("a: 1\nb: 1\nc: 1\nd: 1\nday: 2024-01-01\n")
    merged = collect_parameters(params=[("c", "3"), ("d", "3")], raw=[("d", "4")], files=[f], yamls=["b: 2\nc: 2"])
    assert merged == {"a": 1, "b": 2, "c": 3, "d": "4", "day": "2024-01-01"}


@pytest.mark.parametrize("kwargs, fragment", [
    ({"yamls": ["a: [1"]}, r"^parameters from -y are not valid YAML: expected ',' or '\]', but got '<stream end>' "
                           r"\(line 1, column 6\)$"),
    ({"yamls": ["- 1\n- 2"]}, "must be a YAML mapping"),
    ({"files": ["/nonexistent/p.yaml"]}, "cannot read parameters file"),
    ({"files": ["BINARY"]}, "cannot read parameters file .*: it is not UTF-8 text"),
    ({"yamls": ["lr: 0.1\nepochs: 3\nlr: 0.01"]}, r"key 'lr' is given twice \(lines 1 and 3\); keep one"),
    ({"yamls": ["model: {depth: 3, depth: 4}"]}, r"key 'depth' is given twice \(line 1\)"),
])
def test_bad_parameter_sources(kwargs, fragment, tmp_path):
    if kwargs.get("files") == ["BINARY"]:
        (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe bad")
        kwargs = {"files": [str(tmp_path / "binary.yaml")]}
    with pytest.raises(ParameterError, match=fragment):
        collect_parameters(**kwargs)


@pytest.fixture
def spec(build):
    return build([("epochs = 3\nlr = 0.1\nname = 'a'\nflag = False\nlayers = [1]\nopts = {}\nnote = None\n"
                   "import os\ncwd = os.getcwd()", ["parameters"]), ("x = epochs", [])])


@pytest.mark.parametrize("values, checked", [
    ({"epochs": 5}, {"epochs": 5}),
    ({"lr": 1}, {"lr": 1.0}),
    ({"lr": 0.5, "name": "b", "flag": True}, {"lr": 0.5, "name": "b", "flag": True}),
    ({"layers": [2, 3], "opts": {"k": 1}}, {"layers": [2, 3], "opts": {"k": 1}}),
    ({"note": 3}, {"note": 3}),
    ({"cwd": "/tmp"}, {"cwd": "/tmp"}),
    ({"name": "__import__('os').system('rm -rf /')"}, {"name": "__import__('os').system('rm -rf /')"}),
])
def test_accepted_values(spec, values, checked):
    result = validate_parameters(spec, values)
    assert result == checked and all(type(result[k]) is type(v) for k, v in checked.items())


@pytest.mark.parametrize("values, fragment", [
    ({"epochs": 2.5}, "expects int"),
    ({"epochs": True}, "expects int"),
    ({"epochs": "3"}, "expects int"),
    ({"lr": "fast"}, "expects float"),
    ({"lr": True}, "expects float"),
    ({"flag": 1}, "expects bool"),
    ({"name": 3}, "pass it with -r NAME VALUE"),
    ({"layers": {}}, "expects list"),
    ({"opts": []}, "expects dict"),
])
def test_mismatches_are_rejected(spec, values, fragment):
    with pytest.raises(ParameterError, match=fragment):
        validate_parameters(spec, values)


def test_unknown_name_lists_the_known_ones(spec):
    with pytest.raises(ParameterError) as info:
        validate_parameters(spec, {"epoch": 1})
    assert "unknown parameter 'epoch'" in info.value.message
    assert "epochs (int)" in info.value.message and "lr (float)" in info.value.message
    assert info.value.exit_code == 2


def test_unknown_name_without_parameters_cell(build):
    with pytest.raises(ParameterError, match="are: none"):
        validate_parameters(build([("x = 1", [])]), {"a": 1})


def test_resolved_parameters_are_literal_defaults_plus_overrides(spec):
    resolved = resolved_parameters(spec, {"epochs": 9})
    assert resolved["epochs"] == 9 and resolved["lr"] == 0.1 and "cwd" not in resolved and "os" not in resolved


def test_a_yaml_merge_key_is_not_a_duplicate():
    merged = collect_parameters(yamls=["base: &b {lr: 0.1, depth: 3}\nrun:\n  <<: *b\n  lr: 0.01"])
    assert merged["run"] == {"lr": 0.01, "depth": 3}
