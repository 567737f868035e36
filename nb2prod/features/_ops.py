"""Elementwise op programs shared by the transformers and `FeaturePipeline`.

An op program is a list of ``(kind, params)``; each param is a float64 NumPy
vector with one value per column. Kinds and their meaning per element ``v``:

* ``fill``   (value,)     ``v = value if isnan(v) else v``
* ``clip``   (lo, hi)     ``v = min(max(v, lo), hi)`` (NaN stays NaN)
* ``log1p``  ()           ``v = log1p(v)``
* ``expm1``  ()           ``v = expm1(v)``
* ``affine`` (sub, mul)   ``v = (v - sub) * mul``
"""
from __future__ import annotations

from typing import Any

import numpy as np

Op = tuple[str, tuple[np.ndarray, ...]]


def apply_ops(xp: Any, x: Any, ops: list[Op]) -> Any:
    """Apply an op program step by step with the array-API namespace ``xp``."""
    dt = x.dtype
    for kind, params in ops:
        p = [xp.asarray(np.asarray(v), dtype=dt) for v in params]
        if kind == "fill":
            x = xp.where(xp.isnan(x), p[0], x)
        elif kind == "clip":
            x = xp.where(x < p[0], p[0], xp.where(x > p[1], p[1], x))
        elif kind == "log1p":
            x = xp.log1p(x)
        elif kind == "expm1":
            x = xp.expm1(x)
        elif kind == "affine":
            x = (x - p[0]) * p[1]
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown op {kind!r}")
    return x


class Elementwise:
    """Mixin: a transformer whose transform is an op program (fusable)."""

    def _ops(self) -> list[Op]:
        raise NotImplementedError

    def transform(self, X: Any) -> Any:
        xp, x, ctx = self._validate(X, reset=False)  # type: ignore[attr-defined]
        return self._wrap(apply_ops(xp, x, self._ops()), ctx)  # type: ignore[attr-defined]
