"""A lazy stand-in for ``rfc3987_syntax``, on ``PYTHONPATH`` of the processes of nb2prod's embedded cluster only.

``import ray`` imports jsonschema, whose format checkers import ``rfc3987_syntax``, which builds some 35 Earley
parsers at import: ~2.5 s of CPU in every Python process of a cluster (Ray's daemons, the coordinator, each stage
worker), for IRI checks nothing runs (python-jsonschema/jsonschema#1428). Here the real module is loaded on first
use, so a stage that validates IRIs still gets the real thing; where it is not installed, this is not either.
"""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PATH = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
_SPEC = importlib.machinery.PathFinder.find_spec(__name__, _PATH)
if _SPEC is None:
    raise ImportError(f"No module named {__name__!r}", name=__name__)
_real = None


def _load():
    global _real
    if _real is None:
        _real = importlib.util.module_from_spec(_SPEC)
        sys.modules[__name__] = _real
        _SPEC.loader.exec_module(_real)
    return _real


def is_valid_syntax(term, value):
    """The real ``rfc3987_syntax.is_valid_syntax`` (jsonschema's ``iri`` format check), loaded on first use."""
    return _load().is_valid_syntax(term, value)


def __getattr__(name):
    return getattr(_load(), name)
