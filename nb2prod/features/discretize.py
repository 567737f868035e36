"""KBinsDiscretizer (uniform / quantile bins, ordinal or dense one-hot encoding)."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._base import FeatureTransformer
from .device import to_numpy


class KBinsDiscretizer(FeatureTransformer):
    """Bin continuous features into ``n_bins`` intervals (edges learned on the host)."""

    def __init__(self, n_bins: int = 5, *, encode: str = "ordinal", strategy: str = "quantile",
                 quantile_method: str = "averaged_inverted_cdf", dtype: Any = None,
                 subsample: int | None = 200_000, random_state: Any = None) -> None:
        self.n_bins, self.encode, self.strategy = n_bins, encode, strategy
        self.quantile_method, self.dtype = quantile_method, dtype
        self.subsample, self.random_state = subsample, random_state

    def fit(self, X: Any, y: Any = None) -> "KBinsDiscretizer":
        if self.encode not in ("ordinal", "onehot-dense"):
            raise ValueError("encode must be 'ordinal' or 'onehot-dense' (dense output only)")
        if self.strategy not in ("uniform", "quantile"):
            raise ValueError("strategy must be 'uniform' or 'quantile'")
        _, x, _ = self._validate(X, reset=True)
        xh = to_numpy(x)
        if np.isnan(xh).any():
            raise ValueError("Input X contains NaN; KBinsDiscretizer does not accept missing "
                             "values (impute first)")
        if self.subsample is not None and xh.shape[0] > self.subsample:
            rs = np.random.RandomState(self.random_state) if not isinstance(
                self.random_state, np.random.RandomState) else self.random_state
            xh = xh[rs.choice(xh.shape[0], self.subsample, replace=False)]
        k = xh.shape[1]
        n_bins = np.broadcast_to(np.asarray(self.n_bins, dtype=np.int64), (k,)).copy()
        edges = np.empty(k, dtype=object)
        for j in range(k):
            col = xh[:, j]
            lo, hi = float(col.min()), float(col.max())
            if lo == hi:
                warnings.warn(f"Feature {j} is constant and will be replaced with 0.")
                n_bins[j], edges[j] = 1, np.array([-np.inf, np.inf])
                continue
            if self.strategy == "uniform":
                e = np.linspace(lo, hi, n_bins[j] + 1)
            else:
                levels = np.linspace(0, 100, n_bins[j] + 1)
                kw = {} if self.quantile_method == "linear" else {"method": self.quantile_method}
                e = np.asarray(np.percentile(col, levels, **kw), dtype=np.float64)
                e = e[np.ediff1d(e, to_begin=np.inf) > 1e-8]
                if len(e) - 1 != n_bins[j]:
                    warnings.warn(f"Bins whose width are too small in feature {j} are removed.")
                    n_bins[j] = len(e) - 1
            edges[j] = e
        self.bin_edges_, self.n_bins_ = edges, n_bins
        return self

    def transform(self, X: Any) -> Any:
        xp, x, ctx = self._validate(X, reset=False)
        dt = x.dtype if self.dtype is None else self.dtype
        cols = [xp.astype(xp.searchsorted(xp.asarray(self.bin_edges_[j][1:-1], dtype=x.dtype),
                                          x[:, j], side="right"), dt)
                for j in range(x.shape[1])]
        out = xp.stack(cols, axis=1)
        if self.encode == "onehot-dense":
            blocks = [xp.astype(xp.expand_dims(c, axis=1)
                                == xp.expand_dims(xp.arange(int(n), dtype=dt), axis=0), dt)
                      for c, n in zip(cols, self.n_bins_)]
            out = xp.concat(blocks, axis=1)
        return self._wrap(out, ctx)

    def inverse_transform(self, X: Any) -> Any:
        self._check_fitted()
        xh = to_numpy(X.to_numpy() if hasattr(X, "to_numpy") else X)
        if self.encode == "onehot-dense":
            parts, s = [], 0
            for n in self.n_bins_:
                parts.append(xh[:, s:s + n].argmax(axis=1))
                s += n
            xh = np.stack(parts, axis=1)
        out = np.empty(xh.shape, dtype=np.float64)
        for j, e in enumerate(self.bin_edges_):
            centers = (e[1:] + e[:-1]) * 0.5
            out[:, j] = centers[xh[:, j].astype(np.int64)]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = self._input_names(input_features)
        if self.encode == "ordinal":
            return np.asarray(names, dtype=object)
        return np.asarray([f"{n}_{b}" for n, k in zip(names, self.n_bins_)
                           for b in range(int(k))], dtype=object)
