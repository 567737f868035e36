"""``nb2prod check`` / ``compile``: exit codes, the JSON schema over the corpus, compile round trip, import purity."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

import nb2prod.cli.check  # noqa: F401  (registers the commands)
from nb2prod.cli import cli
from nb2prod.core.compile import compile_notebook
from nb2prod.core.spec import SCHEMA_PATH, load_spec
from nb2prod.errors import ValidationError

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
NOTEBOOKS = sorted(CORPUS.glob("*.ipynb"))
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(VALIDATOR.schema)


def check(*args: str):
    return CliRunner().invoke(cli, ["check", *map(str, args)])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_check_json_follows_the_schema_over_the_corpus(path):
    result = check(path, "--json")
    data = json.loads(result.stdout)  # exactly one JSON object on stdout, also when invalid
    VALIDATOR.validate(data)
    assert result.exit_code == (1 if path.stem.startswith("err_") else 0)
    assert bool(data["errors"]) == path.stem.startswith("err_")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if not p.stem.startswith("err_")],
                         ids=lambda p: p.stem)
def test_pipeline_json_with_code_follows_the_schema_and_loads_back(path, tmp_path):
    written = compile_notebook(path, tmp_path)
    assert [p.name for p in written] == ["pipeline.json", "pipeline.py"]
    data = json.loads((tmp_path / "pipeline.json").read_text())
    VALIDATOR.validate(data)
    assert all("code" in s for s in data["stages"].values()) and "setup" in data
    from nb2prod.core.builder import build_spec

    assert load_spec(tmp_path / "pipeline.json") == build_spec(path)
    ast.parse((tmp_path / "pipeline.py").read_text())


def test_compiled_pipeline_py_calls_the_runner_with_its_pipeline_json(tmp_path):
    compile_notebook(CORPUS / "nb2prod_tags.ipynb", tmp_path)
    script = (tmp_path / "pipeline.py").read_text()
    assert 'main(["run", str(HERE / "pipeline.json"), *sys.argv[1:]])' in script
    assert "#   epochs = 3 (int)" in script


def test_compile_quotes_in_names_and_defaults_cannot_break_the_script(tmp_path):
    nb = json.loads((CORPUS / "papermill_plain.ipynb").read_text())
    nb["cells"][1]["source"] = "alpha = 0.5\nlabel = '\"\"\" \\\\N'"
    path = tmp_path / 'we"""ird\\N.ipynb'
    path.write_text(json.dumps(nb))
    compile_notebook(path, tmp_path / "out")
    ast.parse((tmp_path / "out" / "pipeline.py").read_text())


def test_compile_refuses_an_invalid_notebook(tmp_path):
    with pytest.raises(ValidationError) as info:
        compile_notebook(CORPUS / "err_undefined.ipynb", tmp_path)
    assert "missing_name" in info.value.message and info.value.details["errors"][0]["cell_index"] == 0
    assert not (tmp_path / "pipeline.json").exists()


@pytest.mark.parametrize("args, code", [
    (["check", CORPUS / "kale_basic.ipynb"], 0),
    (["check", CORPUS / "err_cycle.ipynb"], 1),
    (["check", CORPUS / "err_not_json.ipynb"], 1),
    (["check", CORPUS / "err_nbformat3.ipynb"], 1),
    (["check", CORPUS / "does_not_exist.ipynb"], 1),
    (["check"], 2),
    (["check", CORPUS / "kale_basic.ipynb", "--bogus"], 2),
    (["compile", CORPUS / "kale_basic.ipynb"], 2),
    (["compile", CORPUS / "err_shell.ipynb", "-o", "{tmp}"], 1),
    (["compile", CORPUS / "does_not_exist.ipynb", "-o", "{tmp}"], 1),
    (["compile", CORPUS / "kale_basic.ipynb", "-o", "{tmp}"], 0),
])
def test_exit_codes(args, code, tmp_path):
    result = CliRunner().invoke(cli, [str(a).replace("{tmp}", str(tmp_path / "out")) for a in args])
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("name, fragment", [
    ("err_not_json", "invalid JSON"), ("err_nbformat3", "nbformat 3 is too old"), ("missing", "no such file"),
])
def test_not_a_notebook_is_one_clean_error(name, fragment):
    result = check(CORPUS / f"{name}.ipynb", "--json")
    data = json.loads(result.stdout)
    assert data["dialect"] is None and data["stages"] == {} and fragment in data["errors"][0]["message"]
    assert fragment in result.stderr


def test_human_check_output(tmp_path):
    result = check(CORPUS / "nb2prod_tags.ipynb")
    assert result.exit_code == 0 and "ok: 4 stage(s), 4 edge(s)" in result.stdout
    result = check(CORPUS / "err_cycle.ipynb")
    assert "cycle: first -> second -> first" in result.stderr


def test_real_process_prints_only_json_on_stdout():
    proc = subprocess.run([sys.executable, "-m", "nb2prod", "check", str(CORPUS / "err_duplicate.ipynb"), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and json.loads(proc.stdout)["errors"] and "duplicate" in proc.stderr


def test_core_imports_no_ray_mlflow_or_jupyter_server():
    code = ("import sys, nb2prod.core.builder, nb2prod.core.compile, nb2prod.core.params, nb2prod.core.cachekey, "
            "nb2prod.core.status, nb2prod.core.spec\n"
            "from nb2prod.core.builder import build_spec\n"
            f"build_spec({str(CORPUS / 'kale_basic.ipynb')!r})\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'ray', 'mlflow', 'jupyter_server'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_compile_into_a_directory_it_cannot_write_is_a_usage_error(tmp_path):
    (tmp_path / "afile").write_text("")
    notebook = CORPUS / "nb2prod_tags.ipynb"
    result = CliRunner().invoke(cli, ["compile", str(notebook), "-o", str(tmp_path / "afile" / "sub")])
    assert result.exit_code == 2 and f"cannot write the compiled pipeline to {tmp_path / 'afile' / 'sub'}" in result.output
    assert isinstance(result.exception, SystemExit)  # not a traceback
