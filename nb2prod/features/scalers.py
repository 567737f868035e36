"""StandardScaler, MinMaxScaler, RobustScaler (sklearn semantics, array-API compute)."""
from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from ._base import FeatureTransformer, handle_zeros, host_stat, nan_sum_count
from ._ops import Elementwise, Op, apply_ops
from .device import to_numpy


def _ones(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.float64)


def _zeros(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.float64)


class StandardScaler(Elementwise, FeatureTransformer):
    """Standardize features: ``(x - mean_) / scale_``; NaN ignored in fit, kept in transform."""

    def __init__(self, *, copy: bool = True, with_mean: bool = True, with_std: bool = True) -> None:
        self.copy, self.with_mean, self.with_std = copy, with_mean, with_std

    def _reset(self) -> None:
        for a in ("n_samples_seen_", "mean_", "var_", "scale_", "_m2", "_n"):
            self.__dict__.pop(a, None)

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> "StandardScaler":
        self._reset()
        return self.partial_fit(X, y)

    def partial_fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> "StandardScaler":
        """Update mean/variance with a batch (Chan et al. parallel update)."""
        first = not hasattr(self, "_n")
        xp, x, _ = self._validate(X, reset=first)
        s, n = nan_sum_count(xp, x)
        nb, sb = host_stat(n), host_stat(s)
        with np.errstate(invalid="ignore", divide="ignore"):
            mb = sb / nb
        dev = x - xp.asarray(mb, dtype=xp.float64)
        dev = xp.where(xp.isnan(dev), xp.zeros((), dtype=dev.dtype), dev)
        m2b = host_stat(xp.sum(dev * dev, axis=0))
        if first:
            self._n, self._mean, self._m2 = nb, mb, m2b
        else:
            na, ma = self._n, self._mean
            tot = na + nb
            with np.errstate(invalid="ignore", divide="ignore"):
                delta = np.where(nb > 0, mb - ma, 0.0)
                frac = np.where(tot > 0, nb / tot, 0.0)
                self._mean = np.where(na > 0, ma + delta * frac, mb)
                self._m2 = self._m2 + m2b + delta * delta * na * frac
            self._n = tot
        n = self._n
        self.n_samples_seen_ = int(n[0]) if n.size and np.all(n == n[0]) else n.astype(np.int64)
        self.mean_ = self._mean.copy() if (self.with_mean or self.with_std) else None
        if self.with_std:
            with np.errstate(invalid="ignore", divide="ignore"):
                self.var_ = self._m2 / n
            eps = np.finfo(np.float64).eps
            const = self.var_ <= n * eps * self.var_ + (n * self._mean * eps) ** 2
            self.scale_ = handle_zeros(np.sqrt(self.var_), const)
        else:
            self.var_ = self.scale_ = None
        return self

    def _ops(self) -> list[Op]:
        k = self.n_features_in_
        sub = self.mean_ if self.with_mean else _zeros(k)
        mul = 1.0 / self.scale_ if self.with_std else _ones(k)
        return [("affine", (sub, mul))]

    def inverse_transform(self, X: Any) -> Any:
        xp, x, ctx = self._validate(X, reset=False)
        k = self.n_features_in_
        scale = self.scale_ if self.with_std else _ones(k)
        mean = self.mean_ if self.with_mean else _zeros(k)
        return self._wrap(apply_ops(xp, x, [("affine", (-mean / scale, scale))]), ctx)


class MinMaxScaler(Elementwise, FeatureTransformer):
    """Scale each feature to ``feature_range``: ``x * scale_ + min_``."""

    def __init__(self, feature_range: tuple[float, float] = (0, 1), *, copy: bool = True,
                 clip: bool = False) -> None:
        self.feature_range, self.copy, self.clip = feature_range, copy, clip

    def fit(self, X: Any, y: Any = None) -> "MinMaxScaler":
        self.__dict__.pop("n_samples_seen_", None)
        return self.partial_fit(X, y)

    def partial_fit(self, X: Any, y: Any = None) -> "MinMaxScaler":
        """Update the running per-feature min and max with a batch."""
        lo, hi = self.feature_range
        if lo >= hi:
            raise ValueError(f"Minimum of desired feature range must be smaller than maximum. "
                             f"Got {self.feature_range}.")
        first = not hasattr(self, "n_samples_seen_")
        xp, x, _ = self._validate(X, reset=first)
        nan = xp.isnan(x)
        inf = xp.asarray(float("inf"), dtype=x.dtype)
        dmin = host_stat(xp.min(xp.where(nan, inf, x), axis=0))
        dmax = host_stat(xp.max(xp.where(nan, -inf, x), axis=0))
        dmin[np.isinf(dmin)], dmax[np.isinf(dmax)] = np.nan, np.nan
        if not first:
            dmin, dmax = np.fmin(self.data_min_, dmin), np.fmax(self.data_max_, dmax)
            self.n_samples_seen_ += int(x.shape[0])
        else:
            self.n_samples_seen_ = int(x.shape[0])
        self.data_min_, self.data_max_ = dmin, dmax
        self.data_range_ = dmax - dmin
        self.scale_ = (hi - lo) / handle_zeros(self.data_range_)
        self.min_ = lo - dmin * self.scale_
        return self

    def _ops(self) -> list[Op]:
        ops: list[Op] = [("affine", (-self.min_ / self.scale_, self.scale_))]
        if self.clip:
            k = self.n_features_in_
            lo, hi = self.feature_range
            ops.append(("clip", (np.full(k, float(lo)), np.full(k, float(hi)))))
        return ops

    def inverse_transform(self, X: Any) -> Any:
        xp, x, ctx = self._validate(X, reset=False)
        return self._wrap(apply_ops(xp, x, [("affine", (self.min_, 1.0 / self.scale_))]), ctx)


class RobustScaler(Elementwise, FeatureTransformer):
    """Scale with statistics robust to outliers: ``(x - median) / IQR``.

    Order statistics are computed on the host (NumPy); fitted state is host anyway.
    """

    def __init__(self, *, with_centering: bool = True, with_scaling: bool = True,
                 quantile_range: tuple[float, float] = (25.0, 75.0), copy: bool = True,
                 unit_variance: bool = False) -> None:
        self.with_centering, self.with_scaling = with_centering, with_scaling
        self.quantile_range, self.copy, self.unit_variance = quantile_range, copy, unit_variance

    def fit(self, X: Any, y: Any = None) -> "RobustScaler":
        q_min, q_max = self.quantile_range
        if not 0 <= q_min <= q_max <= 100:
            raise ValueError(f"Invalid quantile range: {self.quantile_range}")
        _, x, _ = self._validate(X, reset=True)
        xh = to_numpy(x)
        with np.errstate(all="ignore"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                self.center_ = np.nanmedian(xh, axis=0).astype(np.float64) \
                    if self.with_centering else None
                if self.with_scaling:
                    q = np.nanpercentile(xh, [q_min, q_max], axis=0).astype(np.float64)
                    scale = handle_zeros(q[1] - q[0])
                    if self.unit_variance:
                        nd = NormalDist()
                        scale = scale / (nd.inv_cdf(q_max / 100) - nd.inv_cdf(q_min / 100))
                    self.scale_ = scale
                else:
                    self.scale_ = None
        return self

    def _ops(self) -> list[Op]:
        k = self.n_features_in_
        sub = self.center_ if self.with_centering else _zeros(k)
        mul = 1.0 / self.scale_ if self.with_scaling else _ones(k)
        return [("affine", (sub, mul))]

    def inverse_transform(self, X: Any) -> Any:
        xp, x, ctx = self._validate(X, reset=False)
        k = self.n_features_in_
        scale = self.scale_ if self.with_scaling else _ones(k)
        center = self.center_ if self.with_centering else _zeros(k)
        return self._wrap(apply_ops(xp, x, [("affine", (-center / scale, scale))]), ctx)

