"""RunOptions is declared once: every front end's options and the TypeScript request type derive from it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nb2prod.cli import cli, run, schedule  # noqa: F401 - registers the commands
from nb2prod.contracts import RunOptions
from nb2prod.contracts.options import (MAGICS, RESUME, RUN, SCHEDULE, fields_for, from_click, path_fields,
                                       typescript_fields)
from nb2prod.errors import UsageError

TYPES_TS = Path(__file__).parents[2] / "labextension" / "src" / "types.ts"


def _ts_interface(name: str) -> dict[str, str]:
    body = re.search(rf"export interface {name} \{{(.*?)\n\}}", TYPES_TS.read_text(), re.S).group(1)
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s+(\w+)\??: (.+);$", body, re.M)}


def test_typescript_run_request_mirrors_run_options():
    declared = _ts_interface("IRunRequest")
    assert declared.pop("path") == "string"
    expected = typescript_fields()
    assert declared == expected, "update IRunRequest in labextension/src/types.ts to:\n" + "\n".join(
        f"  {k}?: {v};" for k, v in expected.items())


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params}


@pytest.mark.parametrize("front, command", [
    (RUN, ["run"]), (RESUME, ["resume"]), (SCHEDULE, ["schedule", "add"])])
def test_cli_commands_take_the_declared_options(front, command):
    cmd = cli
    for name in command:
        cmd = cmd.commands[name]
    params = _params(cmd)
    for f in fields_for(front):
        if f.name == "parameters":
            for name in ("params", "raw", "files", "yamls"):
                assert name in params, f"{' '.join(command)} lacks the parameter flag {name}"
        else:
            assert params[f.name].help == f.metadata["help"]
            assert f.metadata["flags"][0] in params[f.name].opts
    hidden = {f.name for f in dataclasses.fields(RunOptions)} - {f.name for f in fields_for(front)}
    assert not hidden & set(params)


def test_magics_take_the_declared_options():
    from nb2prod.notebook.commands import group

    for command in ("run", "params"):
        params = _params(group.commands[command])
        assert {f.name for f in fields_for(MAGICS) if f.metadata["flags"]} <= set(params)
        assert {"params", "raw", "files", "yamls"} <= set(params)


def test_from_click_folds_papermill_parameters_with_precedence():
    from nb2prod.contracts.options import click_options

    seen = {}
    command = click.command()(click_options(RUN)(lambda **kw: seen.update(kw)))
    CliRunner().invoke(command, ["-y", "a: 1\nb: 2", "-p", "a", "3", "-r", "b", "4", "--force", "x", "--log-output"],
                       catch_exceptions=False)
    options = from_click(RUN, dict(seen))
    assert options.parameters == {"a": 3, "b": "4"} and options.force == ["x"] and options.log_output
    assert options.non_defaults() == {"parameters": {"a": 3, "b": "4"}, "force": ["x"], "log_output": True}
    seen.clear()
    CliRunner().invoke(command, ["-p", "day", "{{ scheduled_time:%d }}", "-p", "n", "5"], catch_exceptions=False)
    assert from_click(RUN, dict(seen), typed=False).parameters == {"day": "{{ scheduled_time:%d }}", "n": "5"}


@pytest.mark.parametrize("data, message", [
    ([], "must be a JSON object"),
    ({"warp_speed": True}, "unknown run option(s): warp_speed"),
    ({"log_output": "yes"}, "'log_output' must be true or false, got str"),
    ({"force": ["a", 1]}, "'force' must be a list of one-line strings"),
    ({"pip": ["numpy\n-e /etc"]}, "'pip' must be a list of one-line strings"),
    ({"parameters": []}, "'parameters' must be an object"),
    ({"ray_address": 5}, "'ray_address' must be a one-line string or null, got int"),
    ({"experiment": "a\rb"}, "'experiment' must be a one-line string or null, got str"),
    ({"drift_threshold": float("nan")}, "'drift_threshold' must be a finite number, got float"),
    ({"gpu_fallback": "gpu"}, "'gpu_fallback' must be 'fail' or 'cpu', got 'gpu'"),
])
def test_from_dict_refuses_bad_options(data, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        RunOptions.from_dict(data)


def test_from_dict_round_trips():
    options = RunOptions(parameters={"a": 1}, stages=["s"], gpu_fallback="cpu", secrets=["a"], cache_dir="/c")
    assert RunOptions.from_dict(options.to_dict()) == options


def test_path_options_are_declared():
    assert path_fields() == {"output_notebook": "file", "cache_dir": "dir", "requirements": "input"}
