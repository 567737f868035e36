"""FeaturePipeline (fused == step-by-step) and use inside sklearn Pipeline/ColumnTransformer."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import nb2prod.features as F
from nb2prod.features.fused import fused_numpy, merge_affine


def _chain() -> F.FeaturePipeline:
    return F.FeaturePipeline([
        ("impute", F.SimpleImputer(strategy="median")),
        ("clip", F.ClipTransformer(quantile_range=(1, 99))),
        ("log", F.Log1pTransformer()),
        ("std", F.StandardScaler()),
        ("mm", F.MinMaxScaler(feature_range=(-1, 1))),
    ], device="cpu")


def _x(n: int = 5000, k: int = 8, dtype=np.float64) -> np.ndarray:
    rng = np.random.default_rng(7)
    X = rng.lognormal(size=(n, k)).astype(dtype)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_equals_step_by_step(dtype) -> None:
    X = _x(dtype=dtype)
    p = _chain().fit(X)
    assert p.fusable() and p.device_ == "cpu"
    fused, steps = p.transform(X), p.transform_unfused(X)
    assert fused.dtype == dtype and not np.isnan(fused).any()
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(fused, steps, rtol=tol, atol=tol)


def test_fused_matches_sklearn_chain() -> None:
    import sklearn.impute as ski
    import sklearn.preprocessing as skp
    X = _x()
    ours = F.FeaturePipeline([F.SimpleImputer(), F.Log1pTransformer(), F.StandardScaler(),
                              F.MinMaxScaler()], device="cpu").fit(X)
    theirs = Pipeline([("i", ski.SimpleImputer()), ("l", skp.FunctionTransformer(np.log1p)),
                       ("s", skp.StandardScaler()), ("m", skp.MinMaxScaler())]).fit(X)
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 3])
def test_fused_blocks_and_threads(threads: int) -> None:
    X = _x(n=20011)
    p = _chain().fit(X)
    ref = p.transform_unfused(X)
    got = fused_numpy(X, p.ops(), block_bytes=999, n_threads=threads)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert np.isnan(X).any()  # input untouched


def test_merge_affine() -> None:
    a = ("affine", (np.array([1.0, 2.0]), np.array([2.0, 0.5])))
    b = ("affine", (np.array([3.0, -1.0]), np.array([4.0, 3.0])))
    ops = merge_affine([a, b])
    assert len(ops) == 1
    x = np.array([[5.0, 7.0]])
    np.testing.assert_allclose(fused_numpy(x, [a, b]), ((x - a[1][0]) * a[1][1] - b[1][0]) * b[1][1])


def test_non_elementwise_chain_falls_back() -> None:
    X = _x(n=300, k=3)
    p = F.FeaturePipeline([F.SimpleImputer(), F.KBinsDiscretizer(n_bins=4)], device="cpu").fit(X)
    assert not p.fusable()
    assert p.transform(X).shape == (300, 3)


def test_pandas_and_pickle_and_params() -> None:
    X = _x(n=100, k=3)
    df = pd.DataFrame(X, columns=["a", "b", "c"], index=np.arange(100) * 2)
    p = _chain().fit(df)
    out = p.transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["a", "b", "c"]
    assert list(out.index) == list(df.index)
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_allclose(q.transform(X), out.to_numpy())
    assert p.get_params()["mm__feature_range"] == (-1, 1)
    p.set_params(mm__feature_range=(0, 1))
    assert p.get_params()["mm"].feature_range == (0, 1)


def test_inside_sklearn_pipeline_and_column_transformer() -> None:
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x1": rng.lognormal(size=300), "x2": rng.exponential(size=300),
                       "cat": rng.choice(["a", "b", "c"], 300)})
    df.loc[rng.random(300) < 0.1, "x1"] = np.nan
    y = (df["x2"] + (df["cat"] == "a")).to_numpy() > 1.0
    ct = ColumnTransformer([
        ("num", F.FeaturePipeline([F.SimpleImputer(), F.Log1pTransformer(), F.StandardScaler()],
                                  device="cpu"), ["x1", "x2"]),
        ("cat", F.OneHotEncoder(handle_unknown="ignore"), ["cat"]),
    ])
    model = Pipeline([("features", ct), ("clf", LogisticRegression())])
    model.fit(df, y)
    assert model.score(df, y) > 0.8
    names = list(model[:-1].get_feature_names_out())
    assert names == ["num__x1", "num__x2", "cat__cat_a", "cat__cat_b", "cat__cat_c"]
    scores = cross_val_score(clone(model), df, y, cv=3)
    assert scores.mean() > 0.7
    pipe = Pipeline([("imp", F.SimpleImputer()), ("sc", F.StandardScaler())])
    pipe.set_params(sc__with_mean=False)
    assert pipe.fit_transform(df[["x1", "x2"]]).shape == (300, 2)
    pickle.loads(pickle.dumps(model)).predict(df)
