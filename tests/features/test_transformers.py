"""NumPy path of every transformer vs scikit-learn's own, on the same data."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn.impute as ski
import sklearn.preprocessing as skp
from sklearn.preprocessing import FunctionTransformer

import nb2prod.features as F

RTOL = 1e-6


def _data(kind: str) -> np.ndarray:
    rng = np.random.default_rng(42)
    X = rng.lognormal(size=(300, 6)) * rng.choice([1, 10, 100], size=6)
    if kind == "nan":
        X[rng.random(X.shape) < 0.15] = np.nan
    elif kind == "constant":
        X[:, 1] = 3.5
        X[:, 4] = 0.0
    elif kind == "single":
        X = X[:1]
    elif kind == "int":
        X = rng.integers(0, 20, size=(300, 6))
    return X


PAIRS = {
    "standard": (lambda: F.StandardScaler(), lambda: skp.StandardScaler()),
    "standard_nomean": (lambda: F.StandardScaler(with_mean=False),
                        lambda: skp.StandardScaler(with_mean=False)),
    "minmax": (lambda: F.MinMaxScaler(feature_range=(-1, 2)),
               lambda: skp.MinMaxScaler(feature_range=(-1, 2))),
    "robust": (lambda: F.RobustScaler(quantile_range=(10, 90)),
               lambda: skp.RobustScaler(quantile_range=(10, 90))),
    "robust_unit": (lambda: F.RobustScaler(unit_variance=True),
                    lambda: skp.RobustScaler(unit_variance=True)),
    "impute_mean": (lambda: F.SimpleImputer(), lambda: ski.SimpleImputer()),
    "impute_median": (lambda: F.SimpleImputer(strategy="median"),
                      lambda: ski.SimpleImputer(strategy="median")),
    "impute_mf": (lambda: F.SimpleImputer(strategy="most_frequent"),
                  lambda: ski.SimpleImputer(strategy="most_frequent")),
    "impute_const": (lambda: F.SimpleImputer(strategy="constant", fill_value=-1.0),
                     lambda: ski.SimpleImputer(strategy="constant", fill_value=-1.0)),
    "log1p": (lambda: F.Log1pTransformer(),
              lambda: FunctionTransformer(np.log1p, np.expm1, feature_names_out="one-to-one")),
    "clip": (lambda: F.ClipTransformer(lower=0.5, upper=20.0),
             lambda: FunctionTransformer(lambda x: np.clip(x, 0.5, 20.0))),
}
NO_NAN = {"log1p", "clip"}
KINDS = ["random", "nan", "constant", "single", "int"]


def _close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                               rtol=RTOL, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_matches_sklearn(name: str, kind: str) -> None:
    X = _data(kind)
    ours, theirs = PAIRS[name][0](), PAIRS[name][1]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # sklearn's imputers keep int dtype; ours promotes ints to float64 like the scalers
        ref = X.astype(np.float64) if name.startswith("impute") else X
        expected = theirs.fit_transform(ref)
        got = ours.fit_transform(X)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float64
    _close(got, expected)
    if hasattr(theirs, "inverse_transform") and name not in ("clip",) \
            and not name.startswith("impute"):
        _close(ours.inverse_transform(got), theirs.inverse_transform(expected))
    if name.startswith("impute"):
        assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_pandas_roundtrip(name: str) -> None:
    X = _data("nan")
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)], index=np.arange(10, 310))
    ours, theirs = PAIRS[name][0](), PAIRS[name][1]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours.fit_transform(df)
        expected = theirs.fit_transform(df)
    assert isinstance(got, pd.DataFrame)
    assert list(got.index) == list(df.index)
    assert list(got.columns) == list(ours.get_feature_names_out())
    assert list(ours.feature_names_in_) == list(df.columns)
    _close(got.to_numpy(), np.asarray(expected))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_dtype_preserved(dtype) -> None:
    X = _data("nan").astype(dtype)
    for make, _ in PAIRS.values():
        assert make().fit_transform(X).dtype == dtype


def test_partial_fit_matches_full_fit() -> None:
    X = _data("nan")
    for ours, theirs in [(F.StandardScaler(), skp.StandardScaler()),
                         (F.MinMaxScaler(), skp.MinMaxScaler())]:
        for chunk in np.array_split(X, 4):
            ours.partial_fit(chunk)
            theirs.partial_fit(chunk)
        full = type(ours)().fit(X)
        _close(ours.transform(X), theirs.transform(X))
        _close(ours.transform(X), full.transform(X))
    np.testing.assert_array_equal(ours.n_samples_seen_, theirs.n_samples_seen_)


def test_scaler_keeps_nan_and_fitted_state_is_numpy() -> None:
    X = _data("nan")
    s = F.StandardScaler().fit(X)
    assert np.isnan(s.transform(X)[np.isnan(X)]).all()
    assert isinstance(s.mean_, np.ndarray) and isinstance(s.scale_, np.ndarray)


@pytest.mark.parametrize("make", [v[0] for v in PAIRS.values()], ids=sorted(PAIRS))
def test_pickle(make) -> None:
    X = _data("nan")
    est = make().fit(X)
    est2 = pickle.loads(pickle.dumps(est))
    _close(est2.transform(X), est.transform(X))


def test_get_set_params_and_clone() -> None:
    from sklearn.base import clone
    s = F.MinMaxScaler(feature_range=(-1, 1), clip=True)
    assert s.get_params() == {"feature_range": (-1, 1), "copy": True, "clip": True}
    s.set_params(clip=False)
    assert s.clip is False
    c = clone(s)
    assert c is not s and c.get_params() == s.get_params()
    with pytest.raises(ValueError):
        s.set_params(nope=1)
    assert "feature_range=(-1, 1)" in repr(s)


def test_not_fitted_and_wrong_width() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        F.StandardScaler().transform(np.ones((2, 2)))
    s = F.StandardScaler().fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match="features"):
        s.transform(np.ones((3, 3)))
