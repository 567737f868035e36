"""The embedded cluster's processes import ``rfc3987_syntax`` lazily (nb2prod/runner/lazy): ``import ray`` no
longer builds its parsers (~2.5 s of CPU per process, measured), and an IRI check still uses the real module."""

from __future__ import annotations

import json
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
