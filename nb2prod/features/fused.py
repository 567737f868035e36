"""`FeaturePipeline`: a chain of elementwise transformers compiled into one pass.

CPU: one float buffer, processed in row blocks small enough to stay in cache;
every step runs in place on the block before moving on (rows split across
threads; NumPy ufuncs release the GIL). GPU: one generated
``cupy.ElementwiseKernel``; the code is built only from fixed per-op templates,
every fitted parameter is a kernel argument.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ._base import FeatureTransformer
from ._ops import Elementwise, Op, apply_ops
from .device import is_cupy, select_device, to_numpy

_TEMPLATES = {
    "fill": "if (isnan(v)) v = {0}[c];",
    "clip": "if (v < {0}[c]) v = {0}[c]; if (v > {1}[c]) v = {1}[c];",
    "log1p": "v = log1p(v);",
    "expm1": "v = expm1(v);",
    "affine": "v = (v - {0}[c]) * {1}[c];",
}


def merge_affine(ops: list[Op]) -> list[Op]:
    """Compose consecutive ``affine`` ops into one (fewer passes over a block)."""
    out: list[Op] = []
    for kind, p in ops:
        if kind == "affine" and out and out[-1][0] == "affine":
            s1, m1 = out[-1][1]
            s2, m2 = p
            # (((v - s1) * m1) - s2) * m2 == (v - (s1 + s2 / m1)) * (m1 * m2)
            with np.errstate(divide="ignore", invalid="ignore"):
                sub = np.where(m1 != 0, s1 + s2 / m1, np.nan)
            if np.all(np.isfinite(sub) | ~np.isfinite(s1)):
                out[-1] = ("affine", (sub, m1 * m2))
                continue
        out.append((kind, p))
    return out


def fused_numpy(x: np.ndarray, ops: list[Op], block_bytes: int = 1 << 18,
                n_threads: int | None = None) -> np.ndarray:
    """Apply ``ops`` to a copy of ``x`` in one blocked, in-place pass."""
    out = np.array(x, dtype=x.dtype, order="C", copy=True)
    if out.size == 0:
        return out
    ops = merge_affine(ops)
    params = [(k, [np.asarray(v, dtype=out.dtype) for v in p]) for k, p in ops]
    n, k = out.shape
    rows = max(1, block_bytes // max(1, k * out.itemsize))

    def run(lo: int, hi: int) -> None:
        mask = np.empty((min(rows, hi - lo), k), dtype=bool)
        for s in range(lo, hi, rows):
            blk = out[s:min(s + rows, hi)]
            m = mask[: blk.shape[0]]
            for kind, p in params:
                if kind == "fill":
                    np.isnan(blk, out=m)
                    np.copyto(blk, np.broadcast_to(p[0], blk.shape), where=m)
                elif kind == "clip":
                    np.maximum(blk, p[0], out=blk)  # NaN propagates, like sklearn
                    np.minimum(blk, p[1], out=blk)
                elif kind == "log1p":
                    np.log1p(blk, out=blk)
                elif kind == "expm1":
                    np.expm1(blk, out=blk)
                else:
                    np.subtract(blk, p[0], out=blk)
                    np.multiply(blk, p[1], out=blk)

    threads = n_threads or max(1, min(8, (os.cpu_count() or 2) // 2))
    if threads <= 1 or n < 4 * rows * threads:
        run(0, n)
    else:
        cuts = np.linspace(0, n, threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, cuts[:-1], cuts[1:]))
    return out


@functools.lru_cache(maxsize=64)
def _kernel(kinds: tuple[str, ...]) -> Any:
    import cupy  # type: ignore[import-not-found]
    arity = {"fill": 1, "clip": 2, "log1p": 0, "expm1": 0, "affine": 2}
    args, body, j = [], [], 0
    for kind in kinds:
        names = [f"p{j + a}" for a in range(arity[kind])]
        j += arity[kind]
        args += [f"raw T {nm}" for nm in names]
        body.append(_TEMPLATES[kind].format(*names))
    code = "const ptrdiff_t c = i % ncol; T v = x; " + " ".join(body) + " y = v;"
    return cupy.ElementwiseKernel(", ".join(["T x", *args, "int64 ncol"]), "T y", code,
                                  "nb2prod_fused_" + "_".join(kinds))


def fused_cupy(x: Any, ops: list[Op]) -> Any:
    """Apply ``ops`` on the GPU with one generated elementwise kernel."""
    import cupy  # type: ignore[import-not-found]
    x = cupy.ascontiguousarray(x)
    ops = merge_affine(ops)
    if not ops:
        return x.copy()
    params = [cupy.asarray(np.asarray(v, dtype=x.dtype)) for _, p in ops for v in p]
    y = cupy.empty_like(x)
    _kernel(tuple(k for k, _ in ops))(x, *params, int(x.shape[1]), y)
    return y


class FeaturePipeline(FeatureTransformer):
    """Chain of transformers; elementwise chains run fused (one pass, one kernel).

    ``device``: "auto" | "cpu" | "gpu" (see `select_device`); host input is moved
    to the GPU for computing and the result comes back in the input's kind.
    """

    def __init__(self, steps: list[Any], *, device: str = "auto") -> None:
        self.steps, self.device = steps, device

    def _named(self) -> list[tuple[str, Any]]:
        out = []
        for i, s in enumerate(self.steps):
            out.append(tuple(s) if isinstance(s, (tuple, list)) else
                       (f"{type(s).__name__.lower()}{i}", s))
        return out  # type: ignore[return-value]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params: dict[str, Any] = {"steps": self.steps, "device": self.device}
        if deep:
            for name, est in self._named():
                params[name] = est
                params.update((f"{name}__{k}", v) for k, v in est.get_params(deep=True).items())
        return params

    def set_params(self, **params: Any) -> "FeaturePipeline":
        named = dict(self._named())
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name in ("steps", "device") and not sub:
                setattr(self, name, value)
            elif name in named and sub:
                named[name].set_params(**{sub: value})
            else:
                raise ValueError(f"Invalid parameter {key!r} for FeaturePipeline")
        return self

    def _to_compute(self, x: Any) -> Any:
        xp = select_device(self.device)
        self.device_ = "gpu" if xp.__name__ == "cupy" else "cpu"
        if self.device_ == "gpu" and not is_cupy(x):
            return xp.asarray(x)
        if self.device_ == "cpu" and is_cupy(x):
            return to_numpy(x)
        return x

    def fit(self, X: Any, y: Any = None) -> "FeaturePipeline":
        _, x, _ = self._validate(X, reset=True)
        xt = self._to_compute(x)
        named = self._named()
        for i, (_, est) in enumerate(named):
            xt = est.fit(xt).transform(xt) if i < len(named) - 1 else est.fit(xt)
        return self

    def fusable(self) -> bool:
        """True when every step is elementwise (the chain compiles to one pass)."""
        return all(isinstance(e, Elementwise) and getattr(e, "_fusable", lambda: True)()
                   for _, e in self._named())

    def ops(self) -> list[Op]:
        """The fused op program of the fitted chain."""
        return [op for _, e in self._named() for op in e._ops()]

    def _finish(self, out: Any, X: Any, ctx: Any) -> Any:
        if not is_cupy(X) and is_cupy(out):
            out = to_numpy(out)
        names = self.get_feature_names_out() if ctx.frame else None
        return self._wrap(out, ctx, names)

    def transform(self, X: Any) -> Any:
        _, x, ctx = self._validate(X, reset=False)
        xt = self._to_compute(x)
        if not self.fusable():
            return self.transform_unfused(X)
        out = fused_cupy(xt, self.ops()) if is_cupy(xt) else fused_numpy(xt, self.ops())
        return self._finish(out, x, ctx)

    def transform_unfused(self, X: Any) -> Any:
        """Step-by-step transform (reference and benchmark baseline)."""
        _, x, ctx = self._validate(X, reset=False)
        xt = self._to_compute(x)
        for _, est in self._named():
            xt = est.transform(xt)
        return self._finish(xt, x, ctx)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = self._input_names(input_features)
        for _, est in self._named():
            names = list(est.get_feature_names_out(names))
        return np.asarray(names, dtype=object)


__all__ = ["FeaturePipeline", "fused_numpy", "fused_cupy", "merge_affine", "apply_ops"]
