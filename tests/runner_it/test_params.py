"""Parameters end to end through the CLI: papermill precedence, values stay inert strings, type errors."""

from __future__ import annotations

import ast
import json

import pytest

from tests.conftest import make_notebook, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("any_cluster")]


def _echo_notebook(tmp_path, names_defaults: str, names: list[str]):
    """A notebook whose single stage writes repr() of the given parameters into `seen.txt`."""
    seen = tmp_path / "seen.txt"
    tup = "(" + ", ".join(names) + ",)"
    nb = make_notebook(tmp_path / "echo.ipynb", [
        (names_defaults, ["parameters"]),
        (f"with open({str(seen)!r}, 'w') as fh:\n    fh.write(repr({tup}))\ndone_flag = 1", ["stage:echo"]),
    ])
    return nb, seen


def test_precedence_file_yaml_p_r(tmp_path):
    nb, seen = _echo_notebook(tmp_path, "a = 'da'\nb = 'db'\nc = 'dc'\nd = 'dd'\ne = 'de'", list("abcde"))
    params_file = tmp_path / "params.yaml"
    params_file.write_text("a: file\nb: file\nc: file\nd: file\n")
    proc = run_cli("run", str(nb), "--no-cache", "--quiet", "--json",
                   "-f", str(params_file),
                   "-y", "b: yaml\nc: yaml\nd: yaml",
                   "-p", "c", "pval", "-p", "d", "pval",
                   "-r", "d", "rval")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "done"
    assert ast.literal_eval(seen.read_text()) == ("file", "yaml", "pval", "rval", "de")


def test_p_infers_types_like_papermill_and_r_keeps_strings(tmp_path):
    nb, seen = _echo_notebook(tmp_path, "flag = True\nnone = None\ni = 1\nx = 0.5\ns = 'a'\nraw = 'b'",
                              ["flag", "none", "i", "x", "s", "raw"])
    proc = run_cli("run", str(nb), "--no-cache", "--quiet",
                   "-p", "flag", "False", "-p", "none", "None", "-p", "i", "7", "-p", "x", "2.5",
                   "-p", "s", "hello", "-r", "raw", "12")
    assert proc.returncode == 0, proc.stderr
    assert ast.literal_eval(seen.read_text()) == (False, None, 7, 2.5, "hello", "12")


def test_injection_attempts_arrive_as_inert_strings(tmp_path):
    pwned = tmp_path / "pwned"
    quote = f"x'); import os; os.system('touch {pwned}'); ('"
    newline = f"ok\"\nimport os\nos.system('touch {pwned}')\nz = \"1"
    dunder = f"__import__('os').system('touch {pwned}')"
    triple = f"'''\"\"\"; __import__('os').system('touch {pwned}') #"
    nb, seen = _echo_notebook(tmp_path, "s = 'a'\nt = 'b'\nu = 'c'\nv = 'd'", ["s", "t", "u", "v"])
    out_nb = tmp_path / "out.ipynb"
    proc = run_cli("run", str(nb), "--no-cache", "--quiet", "--output-notebook", str(out_nb),
                   "-r", "s", quote, "-r", "t", newline, "-p", "u", dunder, "-y", json.dumps({"v": triple}))
    assert proc.returncode == 0, proc.stderr
    assert ast.literal_eval(seen.read_text()) == (quote, newline, dunder, triple)
    assert not pwned.exists()
    # the injected-parameters cell in the output notebook only assigns those exact strings
    import nbformat

    nb_out = nbformat.read(out_nb, 4)
    injected = next(c for c in nb_out.cells if "injected-parameters" in c.metadata.get("tags", []))
    tree = ast.parse(injected.source)
    values = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values == {"s": quote, "t": newline, "u": dunder, "v": triple}


def test_unknown_parameter_is_exit_2_listing_known_names(tmp_path):
    nb, _ = _echo_notebook(tmp_path, "n_estimators = 10\nratio = 0.5\nlabel = 'x'", ["n_estimators", "ratio", "label"])
    proc = run_cli("run", str(nb), "-p", "nope", "1")
    assert proc.returncode == 2
    for name in ("nope", "n_estimators", "ratio", "label"):
        assert name in proc.stderr
    assert "Traceback" not in proc.stderr


def test_float_for_int_parameter_is_exit_2(tmp_path):
    nb, seen = _echo_notebook(tmp_path, "n_estimators = 10\nratio = 0.5", ["n_estimators", "ratio"])
    proc = run_cli("run", str(nb), "-p", "n_estimators", "1.5")
    assert proc.returncode == 2
    assert "n_estimators" in proc.stderr and "Traceback" not in proc.stderr
    assert not seen.exists()
    as_json = run_cli("run", str(nb), "-p", "n_estimators", "1.5", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["status"] == "invalid"


def test_int_for_float_parameter_is_accepted(tmp_path):
    nb, seen = _echo_notebook(tmp_path, "n_estimators = 10\nratio = 0.5", ["n_estimators", "ratio"])
    proc = run_cli("run", str(nb), "--no-cache", "--quiet", "-p", "ratio", "2")
    assert proc.returncode == 0, proc.stderr
    n, ratio = ast.literal_eval(seen.read_text())
    assert n == 10 and ratio == 2 and isinstance(ratio, (int, float))
