"""Run ids given on the command line, the REST API and the magics: an nb2prod id, an MLflow parent run id, or a
unique prefix (4 characters or more) of either, matched literally: ``_`` and ``%`` are characters, not wildcards
(``nb2prod cancel 2e_7`` never reaches run 2ec7…)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2prod.errors import RunNotFound
from nb2prod.store import runs

IDS = ("2ec71710eded", "2ec72abcdef0", "a_b%c0000000")


@pytest.fixture
def three_runs(store):
    for run_id in IDS:
        runs.create_run(run_id, "/nb/pipeline.ipynb", {"load": None})
    runs.update_run(IDS[0], mlflow_run_id="f" * 32)
    return store


def test_ids_and_prefixes_match_literally(three_runs):
    assert runs.resolve_run_id("2ec71") == IDS[0] and runs.resolve_run_id("f" * 32) == IDS[0]
    assert runs.resolve_run_id("ffff") == IDS[0] and runs.resolve_run_id("a_b%") == IDS[2]
    with pytest.raises(RunNotFound, match="ambiguous"):
        runs.resolve_run_id("2ec7")
    for wildcard in ("2e_7", "2e%d", "%%%%", "____", "2ec7%"):
        with pytest.raises(RunNotFound, match="no run"):
            runs.resolve_run_id(wildcard)
    with pytest.raises(RunNotFound, match="no run"):
        runs.resolve_run_id("2ec")  # shorter than 4: whole ids only


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(text=st.text(alphabet="2ec7ab_%f0\\'\"", min_size=1, max_size=14))
def test_any_text_resolves_only_to_a_run_it_names(three_runs, text):
    try:
        found = runs.resolve_run_id(text)
    except RunNotFound:
        matches = [i for i in IDS if i == text or (len(text) >= 4 and i.startswith(text))]
        matches += [IDS[0]] if "f" * 32 == text or (len(text) >= 4 and ("f" * 32).startswith(text)) else []
        assert len(set(matches)) != 1
        return
    assert found == text or (len(text) >= 4 and (found.startswith(text) or (found == IDS[0] and
                                                                            ("f" * 32).startswith(text))))
