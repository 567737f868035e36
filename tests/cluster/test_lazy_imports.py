"""The embedded cluster's processes import ``rfc3987_syntax`` lazily (nb2prod/runner/lazy): ``import ray`` no
longer builds its parsers (~2.5 s of CPU per process, measured), and an IRI check still uses the real module."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("rfc3987_syntax")
pytestmark = pytest.mark.slow  # two processes importing Ray, one of them paying the parsers on purpose (~8 s)

PROBE = """
import json, sys
import ray
from jsonschema import Draft7Validator
imported = 'lark' in sys.modules
check = Draft7Validator({'format': 'iri'}, format_checker=Draft7Validator.FORMAT_CHECKER)
print(json.dumps({'built_at_import': imported, 'bad': check.is_valid('http://a b'),
                  'good': check.is_valid('http://example.com/ä'), 'real': sys.modules['rfc3987_syntax'].__file__}))
"""


def _probe(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_the_cluster_environment_defers_the_iri_parsers_and_keeps_the_check(nb2prod_home):
    from nb2prod.runner.cluster import ray_environment

    lazy = _probe(ray_environment())
    assert not lazy["built_at_import"]
    assert (lazy["bad"], lazy["good"]) == (False, True)
    assert "site-packages" in lazy["real"]  # the real module answered
    assert _probe({"PATH": "/usr/bin:/bin"})["built_at_import"]  # what every Ray process paid before


CLIENT = """
import json, sys
from nb2prod.runner.cluster import without_serialization_addons
without_serialization_addons()  # as `nb2prod run` does
from nb2prod import api
from nb2prod.contracts import RunOptions
record = api.run(sys.argv[1], RunOptions(no_cache=True))
print(json.dumps({'status': record['status'], 'imported': sorted(m for m in ('pyarrow', 'pydantic') if m in sys.modules)}))
"""


def test_the_cli_client_skips_rays_serializer_addons_and_arrow_still_travels(nb2prod_home, tmp_path):
    """`nb2prod run` registers none of Ray's serializers for pydantic / starlette / Arrow (their imports were ~0.35 s
    of every run); Arrow tables and pydantic models still pass between stages (the workers have them)."""
    from tests.conftest import make_notebook

    nb = make_notebook(tmp_path / "arrow.ipynb", [
        ("import pyarrow as pa\nimport pydantic\nclass Row(pydantic.BaseModel):\n    a: int\n"
         "table = pa.table({'a': [1, 2, 3]})\nrow = Row(a=4)", ["stage:make"]),
        ("total = sum(table.column('a').to_pylist()) + row.a", ["stage:use", "metrics"]),
    ])
    env = {**os.environ, "NB2PROD_HOME": str(tmp_path / "home")}  # no other test's interrupted run to close
    try:
        runs = [subprocess.run([sys.executable, "-c", CLIENT, str(nb)], env=env, capture_output=True, text=True,
                               timeout=300) for _ in range(2)]  # the first one creates the home's MLflow store
    finally:  # the home's own embedded cluster
        subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "down"], env=env, capture_output=True, timeout=120)
    assert runs[1].returncode == 0, runs[1].stderr[-3000:]
    assert json.loads(runs[1].stdout.splitlines()[-1]) == {"status": "done", "imported": []}
