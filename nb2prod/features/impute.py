"""SimpleImputer and the log/clip family for skewed features."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._base import FeatureTransformer, host_stat, nan_sum_count
from ._ops import Elementwise, Op, apply_ops
from .device import to_numpy

_STRATEGIES = ("mean", "median", "most_frequent", "constant")


def _obj_missing(a: np.ndarray, mv: Any) -> np.ndarray:
    if mv is None or (isinstance(mv, float) and mv != mv):
        return np.frompyfunc(lambda v: v is None or (isinstance(v, float) and v != v), 1, 1)(a) \
            .astype(bool)
    return a == mv


def _most_frequent(col: np.ndarray) -> Any:
    if col.size == 0:
        return np.nan
    vals, counts = np.unique(col, return_counts=True)
    return vals[int(np.argmax(counts))]  # ties -> smallest value, like sklearn


class SimpleImputer(Elementwise, FeatureTransformer):
    """Replace missing values by a per-column mean, median, most frequent value or constant."""

    def __init__(self, *, missing_values: Any = np.nan, strategy: str = "mean",
                 fill_value: Any = None, copy: bool = True,
                 keep_empty_features: bool = False) -> None:
        self.missing_values, self.strategy, self.fill_value = missing_values, strategy, fill_value
        self.copy, self.keep_empty_features = copy, keep_empty_features

    @property
    def _numeric(self) -> bool:  # type: ignore[override]
        return self.strategy in ("mean", "median")

    def _nan_mv(self) -> bool:
        mv = self.missing_values
        return mv is None or (isinstance(mv, float) and mv != mv)

    def _prep(self, X: Any, reset: bool) -> tuple[Any, Any, Any]:
        xp, x, ctx = self._validate(X, reset)
        if x.dtype.kind in "iub" and not self._numeric:
            x = x.astype(np.float64) if x.dtype.kind != "b" else x
        if x.dtype.kind == "f" and not self._nan_mv():
            x = xp.where(x == self.missing_values, xp.asarray(float("nan"), dtype=x.dtype), x)
        return xp, x, ctx

    def fit(self, X: Any, y: Any = None) -> "SimpleImputer":
        if self.strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}, got {self.strategy!r}")
        xp, x, _ = self._prep(X, reset=True)
        self._object = x.dtype == object
        if self._object:
            if self.strategy in ("mean", "median"):
                raise ValueError(f"Cannot use {self.strategy} strategy with non-numeric data")
            miss = _obj_missing(x, self.missing_values)
            observed = miss.sum(axis=0) < x.shape[0]
        else:
            observed = host_stat(nan_sum_count(xp, x)[1]) > 0
        if self.strategy == "constant":
            fv = self.fill_value
            if fv is None:
                fv = "missing_value" if self._object else 0.0
            stats = np.array([fv] * x.shape[1], dtype=object if self._object else np.float64)
        elif self.strategy == "mean":
            s, n = nan_sum_count(xp, x)
            with np.errstate(invalid="ignore", divide="ignore"):
                stats = host_stat(s) / host_stat(n)
        elif self.strategy == "median":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                stats = np.nanmedian(to_numpy(x), axis=0).astype(np.float64)
        else:
            xh = to_numpy(x)
            if self._object:
                stats = np.array([_most_frequent(xh[~miss[:, j], j]) if (~miss[:, j]).any()
                                  else np.nan for j in range(xh.shape[1])], dtype=object)
            else:
                stats = np.array([_most_frequent(c[~np.isnan(c)]) for c in xh.T], dtype=np.float64)
        empty = ~observed
        if self.keep_empty_features and empty.any():
            stats = stats.copy()
            stats[empty] = 0
        self.statistics_ = stats
        self._keep = np.ones(len(stats), bool) if self.keep_empty_features else ~empty
        return self

    def _fusable(self) -> bool:
        return not self._object and self._nan_mv() and bool(self._keep.all())

    def _ops(self) -> list[Op]:
        if not self._fusable():
            raise ValueError("this SimpleImputer is not elementwise (object data, a non-NaN "
                             "missing_values or empty columns dropped)")
        return [("fill", (self.statistics_.astype(np.float64),))]

    def transform(self, X: Any) -> Any:
        xp, x, ctx = self._prep(X, reset=False)
        if self._object or x.dtype == object:
            out = np.array(x, dtype=object, copy=True)
            miss = _obj_missing(out, self.missing_values)
            for j in range(out.shape[1]):
                out[miss[:, j], j] = self.statistics_[j]
        else:
            out = apply_ops(xp, x, [("fill", (self.statistics_.astype(np.float64),))])
        if not self._keep.all():
            out = out[:, np.flatnonzero(self._keep)] if self._object \
                else xp.take(out, xp.asarray(np.flatnonzero(self._keep)), axis=1)
        return self._wrap(out, ctx)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = np.asarray(self._input_names(input_features), dtype=object)
        return names[self._keep]


class Log1pTransformer(Elementwise, FeatureTransformer):
    """``log1p(x)`` for right-skewed, non-negative features; inverse ``expm1``."""

    def __init__(self) -> None:
        pass

    def fit(self, X: Any, y: Any = None) -> "Log1pTransformer":
        self._validate(X, reset=True)
        return self

    def _ops(self) -> list[Op]:
        return [("log1p", ())]

    def inverse_transform(self, X: Any) -> Any:
        xp, x, ctx = self._validate(X, reset=False)
        return self._wrap(apply_ops(xp, x, [("expm1", ())]), ctx)


class ClipTransformer(Elementwise, FeatureTransformer):
    """Clip features to ``[lower, upper]`` or to learned percentiles (``quantile_range``)."""

    def __init__(self, lower: float | None = None, upper: float | None = None,
                 quantile_range: tuple[float, float] | None = None) -> None:
        self.lower, self.upper, self.quantile_range = lower, upper, quantile_range

    def fit(self, X: Any, y: Any = None) -> "ClipTransformer":
        _, x, _ = self._validate(X, reset=True)
        k = x.shape[1]
        if self.quantile_range is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                q = np.nanpercentile(to_numpy(x), list(self.quantile_range), axis=0)
            self.lower_, self.upper_ = q[0].astype(np.float64), q[1].astype(np.float64)
        else:
            lo = -np.inf if self.lower is None else self.lower
            hi = np.inf if self.upper is None else self.upper
            self.lower_ = np.broadcast_to(np.asarray(lo, np.float64), (k,)).copy()
            self.upper_ = np.broadcast_to(np.asarray(hi, np.float64), (k,)).copy()
        return self

    def _ops(self) -> list[Op]:
        return [("clip", (self.lower_, self.upper_))]
