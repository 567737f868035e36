"""Promotion gates (``--gate "accuracy>=0.9"``, ``gate:`` tags): parse, evaluate, compare with a champion.

Pure: reads metric dicts, never MLflow. The gate grammar itself lives in :mod:`nb2prod.core.grammar`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from nb2prod.core.grammar import gate_text, parse_gate
from nb2prod.errors import UsageError

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


@dataclass(frozen=True)
class Gate:
    """``metric op value``; ``>=``/``>`` mean higher is better, ``<=``/``<`` lower."""

    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return gate_text(self.metric, self.op, self.value)

    def holds(self, actual: float) -> bool:
        return _OPS[self.op](actual, self.value)

    def better_or_equal(self, new: float, old: float) -> bool:
        """Whether ``new`` is not worse than ``old`` on this gate's metric."""
        return new <= old if self.op in ("<=", "<") else new >= old


def parse_gates(texts: list[str]) -> list[Gate]:
    """Gates from their text form, duplicates dropped, order kept; a bad one is a UsageError."""
    gates: list[Gate] = []
    for text in texts:
        try:
            gate = Gate(*parse_gate(text))
        except ValueError as exc:
            raise UsageError(f"--gate {text!r}: {exc}") from None
        if gate not in gates:
            gates.append(gate)
    return gates


def evaluate(gates: list[Gate], metrics: dict[str, float]) -> dict[str, Any]:
    """``{status: passed|failed|none, reason, results: [{gate, value, passed, reason}]}``."""
    results = []
    for gate in gates:
        actual = metrics.get(gate.metric)
        if actual is None:
            results.append({"gate": str(gate), "value": None, "passed": False, "reason": f"{gate.metric} not logged"})
            continue
        passed = gate.holds(actual)
        results.append({"gate": str(gate), "value": actual, "passed": passed,
                        "reason": f"{gate.metric} {actual:.4g} {gate.op if passed else _negated(gate.op)} "
                                  f"{gate.value:g}"})
    if not results:
        return {"status": "none", "reason": "no gates", "results": []}
    failed = [r for r in results if not r["passed"]]
    return {"status": "failed" if failed else "passed",
            "reason": "; ".join(r["reason"] for r in (failed or results)), "results": results}


def _negated(op: str) -> str:
    return {">=": "<", ">": "<=", "<=": ">", "<": ">=", "==": "!="}[op]


def check_options(options) -> None:
    """The mlops fields of ``RunOptions``: gates parse, the drift threshold is positive, the alias is a plain
    name (UsageError otherwise, exit 2 / HTTP 400)."""
    parse_gates(options.gates)
    if isinstance(options.drift_threshold, bool) or options.drift_threshold <= 0:
        raise UsageError("drift_threshold must be a positive PSI value (default 0.2)")
    if options.promote is not None and not options.promote.replace("_", "").replace("-", "").isalnum():
        raise UsageError(f"promote alias {options.promote!r}: use letters, digits, '_' and '-'")
    if not options.drift_reference:
        raise UsageError("drift_reference must be champion, previous or a run id")
