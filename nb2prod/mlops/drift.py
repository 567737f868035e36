"""Compare a data profile with a reference profile: PSI per column, KS / chi-square tests (scipy).

PSI uses the reference's decile bins with a 1e-4 floor on both sides; the current frequencies are those of
the current sample in the reference's bins. KS runs on the stored samples (numeric columns), chi-square on
category counts scaled to the sample size (categorical columns).
"""

from __future__ import annotations

import math
import re
from typing import Any

from nb2prod.mlops.profile import OTHER, SAMPLE_ROWS, sample_of

PSI_FLOOR = 1e-4
DEFAULT_THRESHOLD = 0.2
_FORBIDDEN = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(*parts: str) -> str:
    """An MLflow-safe metric name from parts (characters MLflow forbids become ``_``)."""
    return ".".join(_FORBIDDEN.sub("_", p) for p in parts)


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of two frequency vectors over the same bins, with a 1e-4 floor."""
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, PSI_FLOOR), max(a, PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def compare(variable: str, reference: dict[str, Any], current: dict[str, Any],
            threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Drift of ``current`` against ``reference``: per-column PSI and p-value, metrics, drifted columns."""
    columns: dict[str, dict[str, float]] = {}
    for name, cur in current["columns"].items():
        ref = reference["columns"].get(name)
        if ref is None or ref["type"] != cur["type"]:
            continue
        columns[name] = _numeric(ref, cur) if cur["type"] == "numeric" else _categorical(ref, cur)
    drifted = sorted(n for n, c in columns.items() if c["psi"] > threshold)
    max_psi = max((c["psi"] for c in columns.values()), default=0.0)
    metrics = {metric_key("drift", variable, "max_psi"): max_psi}
    for name, values in columns.items():
        for key, value in values.items():
            metrics[metric_key("drift", variable, name, key)] = value
    return {"variable": variable, "max_psi": max_psi, "threshold": threshold, "drifted_columns": drifted,
            "drifted": bool(drifted), "columns": columns, "metrics": metrics}


def _numeric(ref: dict[str, Any], cur: dict[str, Any]) -> dict[str, float]:
    import numpy as np
    from scipy import stats

    ref_sample, cur_sample = sample_of(ref), sample_of(cur)
    if not len(ref_sample) or not len(cur_sample):
        return {"psi": 0.0, "ks_pvalue": 1.0}
    counts = np.bincount(np.searchsorted(ref["edges"], cur_sample, side="right"), minlength=len(ref["frequencies"]))
    actual = (counts / len(cur_sample)).tolist()
    return {"psi": psi(ref["frequencies"], actual),
            "ks_pvalue": float(stats.ks_2samp(ref_sample, cur_sample).pvalue)}


def _categorical(ref: dict[str, Any], cur: dict[str, Any]) -> dict[str, float]:
    import numpy as np
    from scipy import stats

    keys = sorted(set(ref["categories"]) | set(cur["categories"]), key=lambda k: (k == OTHER, k))
    expected = [ref["categories"].get(k, 0.0) for k in keys]
    actual = [cur["categories"].get(k, 0.0) for k in keys]
    table = np.array([[f * min(ref["count"], SAMPLE_ROWS) for f in expected],
                      [f * min(cur["count"], SAMPLE_ROWS) for f in actual]])
    table = table[:, table.sum(axis=0) > 0]
    pvalue = float(stats.chi2_contingency(table).pvalue) if table.shape[1] > 1 and table.sum() else 1.0
    return {"psi": psi(expected, actual), "chi2_pvalue": pvalue}
