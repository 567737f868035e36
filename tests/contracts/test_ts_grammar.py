"""The JupyterLab extension's stage badges read tags with regexes copied from the Python grammar
(``labextension/src/stages.ts``); they must agree with :mod:`nb2prod.core.grammar` on every case here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nb2prod.core import grammar

STAGES_TS = Path(__file__).parents[2] / "labextension" / "src" / "stages.ts"


def _ts(name: str) -> re.Pattern:
    source = re.search(rf"const {name} = /(.+)/;", STAGES_TS.read_text()).group(1)
    return re.compile(source)  # these JS regexes use only syntax that means the same in Python


def _ts_roles() -> dict[str, str]:
    body = re.search(r"const ROLE_TAGS: Record<string, string> = \{(.*?)\};", STAGES_TS.read_text(), re.S).group(1)
    return {k.strip("'"): v for k, v in re.findall(r"^\s*('?[\w-]+'?): '(\w+)'", body, re.M)}


TAGS = ["stage:load", "stage:a-b_1", "stage:", "stage:bad name", "stage:x.y", "Stage:load", "stage:load ",
        "step:train", "block:train", "step:Train", "step:", "block:", "step:1x", "step:_x9", "prev:train",
        "parameters", "setup", "skip", "pipeline-parameters", "imports", "functions", "metrics", "after:load"]


def test_tags_are_trimmed_as_the_grammar_reads_them():
    assert ".map(t => t.trim())" in STAGES_TS.read_text()


@pytest.mark.parametrize("tag", TAGS)
def test_stage_tag_regexes_agree_with_the_grammar(tag):
    directives = grammar.parse_tags([tag])
    match = _ts("STAGE_TAG").match(tag.strip()) or _ts("KALE_TAG").match(tag.strip())
    assert (match.group(1) if match else None) == directives.stage


@pytest.mark.parametrize("tag", TAGS)
def test_role_tags_agree_with_the_grammar(tag):
    expected = grammar.parse_tags([tag]).role
    assert _ts_roles().get(tag.strip(), "code") == expected


@pytest.mark.parametrize("header", ["%%stage load", "  %%stage a-b_1 --after x", "%%stage", "%%stagex y",
                                    "%%stage  train --gpu 1", "%%stage 'bad name'"])
def test_stage_magic_regex_agrees_with_the_grammar(header):
    match = _ts("STAGE_MAGIC").match(header)
    if grammar.STAGE_MAGIC.match(header):
        try:
            name = grammar.parse_stage_magic(header.strip()[len("%%stage"):]).stage
        except (ValueError, SystemExit):
            name = None
    else:
        name = None
    assert (match.group(1) if match else None) == name


def test_stage_name_rule_is_the_grammars():
    assert _ts("STAGE_NAME").pattern == f"^{grammar.NAME}$"
