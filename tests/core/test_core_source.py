"""Magics in cell sources: dropped, unwrapped, or refused with the fix."""

from __future__ import annotations

import ast

import pytest

from nb2prod.core.source import clean_source

SHELL_FIX = "a production stage never shells out"
MAGIC_FIX = "cannot run outside IPython"


def test_pure_python_is_unchanged():
    code = "x = 1\nif x:\n    y = [i for i in range(x)]\n"
    assert clean_source(code).code == code


@pytest.mark.parametrize("line", [
    "%matplotlib inline", "%config InlineBackend.figure_format = 'retina'", "%load_ext nb2prod",
    "%load_ext autoreload", "%autoreload 2", "%nb2prod check", "%precision 3", "%who", "x?", "??x", "np.sum?",
])
def test_dropped_line_magics(line):
    result = clean_source(f"a = 1\n{line}\nb = a")
    assert result.errors == [] and line not in result.code
    assert result.code.count("\n") == 2  # line numbers are kept
    ast.parse(result.code)


def test_dropped_magic_inside_a_block_keeps_the_block_valid():
    result = clean_source("if True:\n    %matplotlib inline\n")
    assert result.errors == [] and "pass" in result.code
    ast.parse(result.code)


@pytest.mark.parametrize("source, kept", [
    ("%time y = f(x)", "y = f(x)"),
    ("%timeit f(x)", "f(x)"),
    ("%%time\ny = f(x)", "y = f(x)"),
    ("%%timeit\ny = f(x)", "y = f(x)"),
    ("%%capture\ny = f(x)", "y = f(x)"),
])
def test_unwrapped_magics_keep_the_statement(source, kept):
    result = clean_source(source)
    assert result.errors == [] and kept in result.code and "%" not in result.code


@pytest.mark.parametrize("magic", ["%%html", "%%markdown", "%%latex", "%%javascript", "%%svg"])
def test_display_cell_magics_drop_the_cell(magic):
    result = clean_source(f"{magic}\n<b>x = 1</b>")
    assert result.errors == [] and result.code.strip() == ""


@pytest.mark.parametrize("source, what", [
    ("!pip install pandas", "!pip install pandas"),
    ("!ls -la", "!ls -la"),
    ("files = !ls", "!ls"),
    ("%pip install pandas", "%pip install pandas"),
    ("%conda install numpy", "%conda install numpy"),
    ("%cd /tmp", "%cd /tmp"),
    ("%run other.py", "%run other.py"),
    ("%%bash\nls", "%%bash"),
    ("%%sh\nls", "%%sh"),
    ("%%script bash\nls", "%%script"),
    ("%%writefile f.py\nprint(1)", "%%writefile"),
    ("if True:\n    !ls", "!ls"),
])
def test_shell_is_refused_with_the_fix(source, what):
    errors = clean_source(source).errors
    assert len(errors) == 1 and f"`{what}`" in errors[0] and SHELL_FIX in errors[0]
    assert "`setup`" in errors[0] and "`skip`" in errors[0]


@pytest.mark.parametrize("source, what", [
    ("%load_ext sql", "%load_ext sql"), ("%env X=1", None), ("%%sql\nselect 1", "%%sql"), ("x = %who_ls", "%who_ls"),
])
def test_other_magics_are_refused(source, what):
    errors = clean_source(source).errors
    assert len(errors) == 1 and "`skip`" in errors[0]
    if what:
        assert f"`{what}`" in errors[0]


def test_refusal_names_the_line():
    assert clean_source("x = 1\ny = 2\n!ls").errors[0].startswith("line 3:")


def test_stage_header_is_split_off():
    result = clean_source("%%stage fit --after load\nmodel = 1")
    assert result.stage_header == "fit --after load" and result.code == "\nmodel = 1" and result.errors == []


def test_syntax_error_after_cleaning_is_reported():
    assert "syntax error" in clean_source("%matplotlib inline\nx = (").errors[0]
