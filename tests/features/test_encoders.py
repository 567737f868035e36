"""Encoders and KBinsDiscretizer vs scikit-learn."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn.preprocessing as skp

import nb2prod.features as F


def _num() -> np.ndarray:
    rng = np.random.default_rng(1)
    X = rng.integers(0, 5, size=(200, 3)).astype(float)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    return pd.DataFrame({"color": rng.choice(["red", "green", None], 120),
                         "size": pd.Categorical(rng.choice(["S", "M", "L"], 120)),
                         "n": rng.integers(0, 3, 120)}, index=np.arange(500, 620))


@pytest.mark.parametrize("data", ["num", "frame", "int"])
def test_onehot_matches(data: str) -> None:
    X = {"num": _num(), "frame": _frame(), "int": np.arange(12).reshape(6, 2) % 3}[data]
    ours = F.OneHotEncoder()
    theirs = skp.OneHotEncoder(sparse_output=False)
    got, exp = ours.fit_transform(X), theirs.fit_transform(X)
    np.testing.assert_array_equal(np.asarray(got), exp)
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())
    if data == "frame":
        assert isinstance(got, pd.DataFrame) and list(got.index) == list(X.index)


def test_onehot_unknown() -> None:
    X = np.array([[1.0], [2.0], [3.0]])
    enc = F.OneHotEncoder(handle_unknown="ignore").fit(X)
    out = enc.transform(np.array([[2.0], [9.0]]))
    np.testing.assert_array_equal(out, [[0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="unknown"):
        F.OneHotEncoder().fit(X).transform(np.array([[9.0]]))
    inv = enc.inverse_transform(out)
    assert inv[0, 0] == 2.0 and inv[1, 0] is None


@pytest.mark.parametrize("data", ["num", "frame"])
def test_ordinal_matches(data: str) -> None:
    X = _num() if data == "num" else _frame()
    ours, theirs = F.OrdinalEncoder(), skp.OrdinalEncoder()
    got, exp = ours.fit_transform(X), theirs.fit_transform(X)
    np.testing.assert_array_equal(np.asarray(got, dtype=float), exp)
    inv_o, inv_t = ours.inverse_transform(got), theirs.inverse_transform(exp)
    assert [[None if v is None or v != v else v for v in r] for r in inv_o.tolist()] == \
        [[None if v is None or v != v else v for v in r] for r in inv_t.tolist()]


def test_ordinal_unknown_value() -> None:
    X = np.array([["a"], ["b"]], dtype=object)
    ours = F.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1).fit(X)
    theirs = skp.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1).fit(X)
    Z = np.array([["b"], ["zzz"]], dtype=object)
    np.testing.assert_array_equal(ours.transform(Z), theirs.transform(Z))


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("encode", ["ordinal", "onehot-dense"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_kbins_matches(strategy: str, encode: str, dtype) -> None:
    rng = np.random.default_rng(3)
    X = (rng.exponential(size=(400, 4)) * 10).astype(dtype)
    X[:, 3] = 2
    ours = F.KBinsDiscretizer(n_bins=6, strategy=strategy, encode=encode)
    theirs = skp.KBinsDiscretizer(n_bins=6, strategy=strategy, encode=encode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, exp = ours.fit_transform(X), theirs.fit_transform(X)
        np.testing.assert_allclose(ours.inverse_transform(got), theirs.inverse_transform(exp),
                                   rtol=1e-6, equal_nan=True)
    assert got.dtype == exp.dtype
    np.testing.assert_array_equal(got, exp)
    assert len(ours.get_feature_names_out()) == got.shape[1]
    pickle.loads(pickle.dumps(ours)).transform(X)


def test_kbins_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        F.KBinsDiscretizer().fit(np.array([[1.0], [np.nan]]))
