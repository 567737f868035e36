"""Shared machinery: sklearn-compatible params, input validation, output wrapping."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from .device import is_cupy, to_numpy


def _is_frame(X: Any) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc") and hasattr(X, "index")


class Ctx:
    """How to give the output back in the input's kind (array or DataFrame)."""

    __slots__ = ("index", "frame")

    def __init__(self, frame: bool, index: Any = None) -> None:
        self.frame, self.index = frame, index


class FeatureTransformer:
    """Base class: sklearn's estimator protocol without importing sklearn."""

    _numeric = True  # convert input to float (ints -> float64)

    # -- sklearn estimator protocol ---------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> "FeatureTransformer":
        valid = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for {type(self).__name__}")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        args = [f"{k}={getattr(self, k)!r}" for k, p in sig.parameters.items()
                if k != "self" and getattr(self, k) is not p.default
                and not _equal(getattr(self, k), p.default)]
        return f"{type(self).__name__}({', '.join(args)})"

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags
        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(),
                    input_tags=InputTags(allow_nan=True, string=not self._numeric))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_features_in_")

    # -- transformer protocol ---------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "FeatureTransformer":
        raise NotImplementedError

    def transform(self, X: Any) -> Any:
        raise NotImplementedError

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        return self.fit(X, y, **fit_params).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self._input_names(input_features), dtype=object)

    def _input_names(self, input_features: Any = None) -> list[str]:
        if input_features is not None:
            return [str(f) for f in input_features]
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            return [str(n) for n in names]
        return [f"x{i}" for i in range(self.n_features_in_)]

    # -- helpers ------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise RuntimeError(f"This {type(self).__name__} instance is not fitted yet; "
                               "call 'fit' first.")

    def _validate(self, X: Any, reset: bool) -> tuple[Any, Any, Ctx]:
        """Return (xp, 2-D array, ctx); ints -> float64 for numeric transformers."""
        if not reset:
            self._check_fitted()
        if _is_frame(X):
            ctx = Ctx(True, X.index)
            cols = list(X.columns)
            names = np.asarray(cols, dtype=object) if all(isinstance(c, str) for c in cols) else None
            if self._numeric:
                arr = X.to_numpy(dtype=_frame_float(X))
            else:
                arr = X.to_numpy()
        else:
            ctx, names = Ctx(False), None
            arr = X if is_cupy(X) else np.asarray(X)
            if self._numeric and arr.dtype.kind not in "fiub":
                arr = arr.astype(np.float64)
        if arr.ndim != 2:
            raise ValueError(f"Expected a 2-D array, got shape {arr.shape}; reshape 1-D data "
                             "with .reshape(-1, 1) or .reshape(1, -1).")
        if self._numeric and arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        if reset:
            self.n_features_in_ = int(arr.shape[1])
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif arr.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {arr.shape[1]} features, but {type(self).__name__} "
                             f"is expecting {self.n_features_in_} features as input.")
        xp = array_namespace(arr) if arr.dtype != object else np
        return xp, arr, ctx

    def _wrap(self, out: Any, ctx: Ctx, names: Any = None) -> Any:
        if not ctx.frame:
            return out
        import pandas as pd
        if names is None:
            names = self.get_feature_names_out()
        return pd.DataFrame(to_numpy(out), index=ctx.index, columns=list(names))


def _frame_float(X: Any) -> Any:
    kinds = {np.dtype(d).kind if not hasattr(d, "numpy_dtype") else d.numpy_dtype.kind
             for d in X.dtypes}
    if all(np.dtype(d) == np.float32 for d in X.dtypes if not hasattr(d, "numpy_dtype")) \
            and kinds == {"f"}:
        return np.float32
    return np.float64


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays etc.
        return False


def host_stat(x: Any) -> np.ndarray:
    """Fitted state lives on the host as float64."""
    return np.asarray(to_numpy(x), dtype=np.float64)


def nan_sum_count(xp: Any, x: Any) -> tuple[Any, Any]:
    """Column sums (float64) and non-NaN counts, ignoring NaN."""
    mask = xp.isnan(x)
    filled = xp.where(mask, xp.zeros((), dtype=x.dtype), x)
    s = xp.sum(filled, axis=0, dtype=xp.float64)
    n = xp.sum(xp.astype(~mask, xp.float64), axis=0)
    return s, n


def handle_zeros(scale: np.ndarray, constant: np.ndarray | None = None) -> np.ndarray:
    """Like sklearn's _handle_zeros_in_scale: near-zero scales become 1."""
    scale = scale.copy()
    mask = scale < 10 * np.finfo(scale.dtype).eps
    if constant is not None:
        mask |= constant
    scale[mask] = 1.0
    return scale
