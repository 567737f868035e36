"""OneHotEncoder, OrdinalEncoder, KBinsDiscretizer.

Categories are learned on the host (they are fitted state); numeric columns are
encoded with the input's array namespace (CuPy stays on the GPU), object/string
columns with NumPy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._base import FeatureTransformer
from .device import to_numpy


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _categories(col: np.ndarray) -> np.ndarray:
    if col.dtype != object:
        return np.unique(col)  # NaN (if any) sorts last, collapsed to one
    vals = [v for v in col if not _is_missing(v)]
    cats = sorted(set(vals))
    has_nan = len(vals) != len(col)
    return np.array(cats + ([np.nan] if has_nan else []), dtype=object)


def _codes(xp: Any, col: Any, cats: np.ndarray) -> Any:
    """Index of each value in ``cats`` (-1 when unknown); missing -> index of NaN cat."""
    if col.dtype == object or cats.dtype == object:
        col = np.asarray(to_numpy(col), dtype=object)
        lookup = {c: i for i, c in enumerate(cats) if not _is_missing(c)}
        nan_idx = len(cats) - 1 if len(cats) and _is_missing(cats[-1]) else -1
        f = np.frompyfunc(lambda v: nan_idx if _is_missing(v) else lookup.get(v, -1), 1, 1)
        return f(col).astype(np.int64)
    cats_x = xp.asarray(cats, dtype=col.dtype)
    finite = cats[~np.isnan(cats)] if cats.dtype.kind == "f" else cats
    fx = xp.asarray(finite, dtype=col.dtype)
    if finite.size == 0:
        idx = xp.zeros(col.shape, dtype=xp.int64) - 1
    else:
        pos = xp.searchsorted(fx, col)
        pos_c = xp.clip(pos, 0, finite.size - 1) if hasattr(xp, "clip") else pos
        hit = xp.take(fx, pos_c) == col
        idx = xp.where(hit, pos_c, xp.asarray(-1, dtype=pos_c.dtype))
    if cats.dtype.kind == "f" and cats.size and np.isnan(cats[-1]):
        idx = xp.where(xp.isnan(col), xp.asarray(cats.size - 1, dtype=idx.dtype), idx)
    del cats_x
    return idx


class _BaseEncoder(FeatureTransformer):
    _numeric = False

    def _fit_categories(self, X: Any) -> tuple[Any, Any, Any]:
        xp, x, ctx = self._validate(X, reset=True)
        xh = to_numpy(x)
        if self.categories == "auto":
            self.categories_ = [_categories(xh[:, j]) for j in range(xh.shape[1])]
        else:
            self.categories_ = [np.asarray(c) for c in self.categories]
        return xp, x, ctx

    def _all_codes(self, xp: Any, x: Any, unknown_error: bool) -> list[Any]:
        out = []
        for j, cats in enumerate(self.categories_):
            col = x[:, j]
            codes = _codes(np if col.dtype == object else xp, col, cats)
            if unknown_error and bool(to_numpy((codes < 0)).any()):
                bad = to_numpy(col)[to_numpy(codes) < 0][:3]
                raise ValueError(f"Found unknown categories {list(bad)} in column {j} during "
                                 "transform")
            out.append(codes)
        return out


class OneHotEncoder(_BaseEncoder):
    """Dense one-hot encoding; ``handle_unknown='ignore'`` gives all-zero rows."""

    def __init__(self, *, categories: Any = "auto", sparse_output: bool = False,
                 dtype: Any = np.float64, handle_unknown: str = "error") -> None:
        self.categories, self.sparse_output = categories, sparse_output
        self.dtype, self.handle_unknown = dtype, handle_unknown

    def fit(self, X: Any, y: Any = None) -> "OneHotEncoder":
        if self.sparse_output:
            raise ValueError("nb2prod's OneHotEncoder is dense: pass sparse_output=False")
        if self.handle_unknown not in ("error", "ignore"):
            raise ValueError("handle_unknown must be 'error' or 'ignore'")
        self._fit_categories(X)
        return self

    def transform(self, X: Any) -> Any:
        xp, x, ctx = self._validate(X, reset=False)
        codes = self._all_codes(xp, x, self.handle_unknown == "error")
        blocks = []
        for c, cats in zip(codes, self.categories_):
            mod = np if isinstance(c, np.ndarray) and not hasattr(xp, "cuda") else xp
            c = mod.asarray(c) if mod is not np else to_numpy(c)
            rng = mod.arange(len(cats), dtype=c.dtype)
            blocks.append(mod.astype(c[:, None] == rng[None, :], self.dtype)
                          if hasattr(mod, "astype") else (c[:, None] == rng[None, :]).astype(self.dtype))
        out = blocks[0] if len(blocks) == 1 else _concat(blocks)
        return self._wrap(out, ctx)

    def inverse_transform(self, X: Any) -> np.ndarray:
        xh = to_numpy(X.to_numpy() if hasattr(X, "to_numpy") else X)
        cols, start = [], 0
        for cats in self.categories_:
            blk = xh[:, start:start + len(cats)]
            start += len(cats)
            idx = blk.argmax(axis=1)
            col = np.asarray(cats, dtype=object)[idx]
            col[blk.sum(axis=1) == 0] = None
            cols.append(col)
        return np.stack(cols, axis=1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = self._input_names(input_features)
        return np.asarray([f"{n}_{c}" for n, cats in zip(names, self.categories_)
                           for c in cats], dtype=object)


def _concat(blocks: list[Any]) -> Any:
    from array_api_compat import array_namespace
    return array_namespace(blocks[0]).concat(blocks, axis=1)


class OrdinalEncoder(_BaseEncoder):
    """Encode categories as 0..k-1; missing -> ``encoded_missing_value``."""

    def __init__(self, *, categories: Any = "auto", dtype: Any = np.float64,
                 handle_unknown: str = "error", unknown_value: float | None = None,
                 encoded_missing_value: float = np.nan) -> None:
        self.categories, self.dtype, self.handle_unknown = categories, dtype, handle_unknown
        self.unknown_value, self.encoded_missing_value = unknown_value, encoded_missing_value

    def fit(self, X: Any, y: Any = None) -> "OrdinalEncoder":
        if self.handle_unknown not in ("error", "use_encoded_value"):
            raise ValueError("handle_unknown must be 'error' or 'use_encoded_value'")
        if self.handle_unknown == "use_encoded_value" and self.unknown_value is None:
            raise TypeError("unknown_value must be set when handle_unknown='use_encoded_value'")
        self._fit_categories(X)
        return self

    def transform(self, X: Any) -> Any:
        xp, x, ctx = self._validate(X, reset=False)
        codes = self._all_codes(xp, x, self.handle_unknown == "error")
        cols = []
        for c, cats in zip(codes, self.categories_):
            mod = np if isinstance(c, np.ndarray) else xp
            v = mod.astype(c, self.dtype) if mod is not np else c.astype(self.dtype)
            if self.handle_unknown == "use_encoded_value":
                v = mod.where(c < 0, mod.asarray(self.unknown_value, dtype=v.dtype), v)
            if len(cats) and _is_missing(cats[-1]):
                miss = mod.asarray(self.encoded_missing_value, dtype=v.dtype)
                v = mod.where(c == len(cats) - 1, miss, v)
            cols.append(v)
        if isinstance(cols[0], np.ndarray):
            out = np.stack(cols, axis=1)
        else:
            out = xp.stack(cols, axis=1)
        return self._wrap(out, ctx)

    def inverse_transform(self, X: Any) -> np.ndarray:
        xh = to_numpy(X.to_numpy() if hasattr(X, "to_numpy") else X).astype(np.float64)
        cols = []
        for j, cats in enumerate(self.categories_):
            cats = np.asarray(cats, dtype=object)
            col = np.empty(xh.shape[0], dtype=object)
            v = xh[:, j]
            ok = ~np.isnan(v) & (v >= 0) & (v < len(cats))
            col[ok] = cats[v[ok].astype(np.int64)]
            col[~ok] = None
            cols.append(col)
        return np.stack(cols, axis=1)
