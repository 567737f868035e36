"""For any input, the CLI's option parsing exits 0-2 with a message (never a traceback) and writes nothing
outside NB2PROD_HOME and its working directory; the tag grammar and the ``%%stage`` header report problems as
data; YAML parameters are a mapping or a ParameterError. In-process (click's CliRunner), real store."""

from __future__ import annotations

import shutil

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from nb2prod.core import grammar
from nb2prod.core.builder import spec_from_notebook
from nb2prod.core.params import collect_parameters
from nb2prod.errors import ParameterError
from tests.conftest import EXAMPLE, make_notebook
from tests.property.conftest import BOUNDED, crons, files_outside, names, paths
from tests.server.conftest import CYCLE

# an OS passes no NUL in argv: everything else may come
argv_text = st.text(alphabet=st.characters(exclude_characters="\x00"), max_size=12)
words = argv_text | st.sampled_from(
    ["-p", "-r", "-f", "-y", "--secret", "--env", "--tracking-uri", "--output-notebook", "--cache-dir", "--stage",
     "--force", "--gpu-fallback", "--pip", "--requirements", "--resume", "--json", "--quiet", "--tz", "--cron",
     "--mode", "--catchup", "--catchup-max", "--max-concurrent", "--timeout", "--retries", "--retry-backoff",
     "--notify-url", "-n", "--limit", "--", "n_estimators", "5", "1.5", "True", "x=ENV", "{a: [1, 2]}",
     "../x.ipynb", "/etc/passwd", "R 2 * * *", "@daily", "Europe/Paris", "cpu", "nope"])
argv_paths, argv_names, argv_crons = (s.filter(lambda t: "\x00" not in t) for s in (paths, names, crons))
argvs = st.one_of(
    st.tuples(st.just("check"), argv_paths).map(list),
    st.builds(lambda rest: ["run", "cycle.ipynb", *rest], st.lists(words, max_size=6)),
    st.builds(lambda name, nb, cron, rest: ["schedule", "add", "--cron", cron, *rest, "--", name, nb],
              argv_names, argv_paths, argv_crons, st.lists(words, max_size=5)),
    st.builds(lambda cron, rest: ["schedule", "preview", *rest, "--", cron], argv_crons, st.lists(words, max_size=3)),
    st.builds(lambda cmd, name: ["schedule", cmd, "--", name], st.sampled_from(["show", "pause", "resume", "remove"]),
              argv_names),
    st.builds(lambda rest: ["runs", *rest], st.lists(words, max_size=3)),
    st.lists(words, max_size=5),
)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "pipeline.ipynb")
    make_notebook(tmp_path / "cycle.ipynb", CYCLE)
    (tmp_path / "broken.ipynb").write_text("not JSON")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_exits_0_to_2_with_a_message_for_any_arguments(workdir, nb2prod_home, basetemp):
    from nb2prod.cli import cache, check, cluster, cli, run, runs, schedule  # noqa: F401 - register commands
    from nb2prod.scheduling import schedules

    before = files_outside(basetemp, workdir, nb2prod_home)
    runner = CliRunner()

    @BOUNDED
    @given(argvs)
    def prop(argv):
        result = runner.invoke(cli, argv, catch_exceptions=True)
        assert result.exception is None or isinstance(result.exception, SystemExit), (argv, result.output)
        assert result.exit_code in (0, 1, 2), (argv, result.exit_code, result.output)
        assert "Traceback" not in result.output, (argv, result.output)
        if result.exit_code:
            assert result.output.strip(), argv
        for row in schedules.list_all():  # `schedule add` may succeed: leave the store as it was
            schedules.remove(row["name"])

    prop()
    assert files_outside(basetemp, workdir, nb2prod_home) == before


tags = st.lists(st.text(max_size=20) | st.sampled_from(
    ["stage:a", "stage:b", "after:a", "step:x", "block:", "prev:x", "skip", "parameters", "setup", "metrics",
     "pipeline-metrics", "pipeline-parameters", "resources:cpu=2", "resources:memory=4GiB", "resources:x",
     "retries:2", "timeout:1.5", "nocache", "gpu", "limit:nvidia.com/gpu:1", "inputs:*.csv", "imports"]), max_size=4)
sources = st.text(max_size=40) | st.sampled_from(
    ["x = 1", "y = x + 1", "%%stage a --after b\nz = 1", "%%stage\n", "%%stage a --bogus", "print(x)", "!ls",
     "%load_ext nb2prod", "def f():\n    return x", "x = (" * 50, "a = 1" + " + 1" * 3000, "\0", "print(d1)"])


@BOUNDED
@given(tags)
def test_tags_never_raise(cell_tags):
    directives = grammar.parse_tags(cell_tags)
    assert all(isinstance(p, str) and p for p in directives.problems)


@BOUNDED
@given(st.text(max_size=60))
def test_stage_header_raises_only_a_readable_value_error(line):
    try:
        grammar.parse_stage_magic(line)
    except ValueError as exc:
        assert str(exc)


@BOUNDED
@given(st.lists(st.tuples(sources, tags), max_size=5))
@example([("a = 1" + " + 1" * 3000, ["stage:a"])])
@example([("x = 1", ["step:a"]), ("print(", ["pipeline-metrics"])])
@example([("%%stage a --bogus\nx = 1", ["skip"])])
def test_any_tagged_notebook_builds_a_spec_or_lists_its_errors(cells):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "code", "source": src, "metadata": {"tags": t}, "outputs": []} for src, t in cells]}
    spec = spec_from_notebook(nb, "/x/nb.ipynb")
    assert all(isinstance(e.message, str) and e.message for e in spec.errors)


yaml_texts = st.text(max_size=60) | st.sampled_from(
    ["a: 1", "- 1\n- 2", "a: !!python/object:os.system ls", "[" * 2000, "a: &x [1]\nb: *x", "? [1]\n: 2", "a: 2026-01-01",
     "{a: 1, a: 2}", "a: .nan", "!!binary aGk=", ""]) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=6).map(yaml.dump)


@BOUNDED
@given(yaml_texts)
@example("[" * 2000)
def test_yaml_parameters_are_a_mapping_or_a_parameter_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "params.yaml"
    path.write_text(text)
    for kwargs in ({"yamls": [text]}, {"files": [str(path)]}):
        try:
            assert isinstance(collect_parameters(**kwargs), dict)
        except ParameterError as exc:
            assert exc.message
