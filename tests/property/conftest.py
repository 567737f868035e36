"""Property tests of bad input: pytest-jupyter's server fixtures (for the REST properties) and the strategies
shared by the REST, CLI, tag-grammar and YAML properties. Bounded example counts keep them in the fast lane."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures and hooks of pytest-jupyter

from tests.server.conftest import jp_server_config, root  # noqa: F401 - the nb2prod server and its root

# Examples per property: bounded for the fast lane; NB2PROD_PROPERTY_EXAMPLES=1000 for a long search.
EXAMPLES = int(os.environ.get("NB2PROD_PROPERTY_EXAMPLES", 30))
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.filter_too_much])

# JSON values of every shape (what a REST client can send)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
# Paths as clients send them: good, missing, escaping, absolute, odd
paths = st.sampled_from(["pipeline.ipynb", "cycle.ipynb", "broken.ipynb", "missing.ipynb", "../outside/x.ipynb",
                         "/etc/passwd", "~/x.ipynb", "sub/../../x", "link/x", "a\\..\\..\\b", "", " ", "."]) \
    | st.text(max_size=16)
crons = st.sampled_from(["@daily", "0 2 * * *", "R 2 * * *", "H 2 * * *", "61 * * * *", "0 0 30 2 *",
                         "* * * * * *", "@reboot", "0 0 * * 5L", "", "*/0 * * * *"]) | st.text(max_size=14)
names = st.sampled_from(["nightly", "a b", "a/b", "-x", ".x", "x" * 200, "ünï", ""]) | st.text(max_size=10)


def files_outside(base: Path, *inside: Path) -> set[tuple[str, float]]:
    """Every file under ``base`` except those under ``inside`` (what must not change), with its mtime."""
    inside = tuple(p.resolve() for p in inside)
    found = set()
    for path in base.rglob("*"):
        real = path.resolve()
        if path.is_file() and not any(real == p or p in real.parents for p in inside):
            found.add((str(path), path.stat().st_mtime))
    return found


@pytest.fixture
def basetemp(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp()
