"""CuPy path vs NumPy path; skipped with a reason when no usable GPU (never crashes)."""
from __future__ import annotations

import numpy as np
import pytest

import nb2prod.features as F
from nb2prod.features.device import gpu_available

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not gpu_available(), reason="no usable GPU (CuPy missing or "
                                 "no CUDA device)")]


def _x(dtype=np.float64) -> np.ndarray:
    rng = np.random.default_rng(5)
    X = rng.lognormal(size=(4096, 16)).astype(dtype)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


MAKERS = [lambda: F.StandardScaler(), lambda: F.MinMaxScaler(clip=True),
          lambda: F.RobustScaler(), lambda: F.SimpleImputer(strategy="median"),
          lambda: F.SimpleImputer(), lambda: F.Log1pTransformer(),
          lambda: F.ClipTransformer(quantile_range=(5, 95))]


@pytest.mark.parametrize("i", range(len(MAKERS)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_matches_numpy(i: int, dtype) -> None:
    import cupy
    X = _x(dtype)
    if i in (5, 6):
        X = np.nan_to_num(X)
    cpu = MAKERS[i]().fit(X)
    gpu = MAKERS[i]().fit(cupy.asarray(X))
    out = gpu.transform(cupy.asarray(X))
    assert isinstance(out, cupy.ndarray) and out.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out.get(), cpu.transform(X), rtol=tol, atol=tol)


def test_encoders_on_gpu() -> None:
    import cupy
    X = np.random.default_rng(0).integers(0, 4, (500, 3)).astype(np.float64)
    X[::7, 1] = np.nan
    for make in (F.OneHotEncoder, F.OrdinalEncoder, lambda: F.KBinsDiscretizer(n_bins=3)):
        if make is not F.OneHotEncoder and make is not F.OrdinalEncoder:
            X = np.nan_to_num(X)
        ref = make().fit(X).transform(X)
        out = make().fit(cupy.asarray(X)).transform(cupy.asarray(X))
        assert isinstance(out, cupy.ndarray)
        np.testing.assert_allclose(out.get(), ref, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_kernel_equals_step_by_step(dtype) -> None:
    import cupy
    X = _x(dtype)
    p = F.FeaturePipeline([F.SimpleImputer(), F.ClipTransformer(quantile_range=(1, 99)),
                           F.Log1pTransformer(), F.StandardScaler(), F.MinMaxScaler()],
                          device="gpu").fit(X)
    assert p.device_ == "gpu"
    fused = p.transform(cupy.asarray(X))
    steps = p.transform_unfused(cupy.asarray(X))
    assert isinstance(fused, cupy.ndarray)
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(fused.get(), steps.get(), rtol=tol, atol=tol)
    host = p.transform(X)  # host in -> host out, computed on the GPU
    assert isinstance(host, np.ndarray)
    cpu = F.FeaturePipeline(p.steps, device="cpu")
    cpu.n_features_in_ = p.n_features_in_
    np.testing.assert_allclose(host, cpu.transform(X), rtol=tol, atol=tol)


def test_select_device_gpu() -> None:
    import cupy
    assert F.select_device("gpu") is cupy
    assert F.select_device("auto") is cupy
