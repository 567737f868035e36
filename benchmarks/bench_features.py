"""Benchmark nb2prod.features: a 5-step chain on N rows x 32 float32 features.

Compares, on the same data in the same run:
  * scikit-learn Pipeline (SimpleImputer, clip, log1p, StandardScaler, MinMaxScaler)
  * nb2prod step-by-step (FeaturePipeline.transform_unfused)
  * nb2prod fused NumPy (FeaturePipeline.transform, device="cpu")
  * on a usable GPU also: CuPy step-by-step vs the fused CuPy kernel, and the
    fused kernel's achieved memory bandwidth (read + write of the array).

Usage:
  python benchmarks/bench_features.py [--rows 10000000] [--cols 32] [--repeat 3]
         [--peak-gbs 3350] [--out benchmarks/results_features.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def make_data(rows: int, cols: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = np.empty((rows, cols), dtype=np.float32)
    step = 1_000_000
    for s in range(0, rows, step):
        blk = rng.standard_exponential(size=(min(step, rows - s), cols), dtype=np.float32)
        blk[rng.random(blk.shape, dtype=np.float32) < 0.02] = np.nan
        X[s:s + step] = blk
    return X


def chains() -> tuple[Any, Any]:
    import sklearn.impute as ski
    import sklearn.pipeline as skl
    import sklearn.preprocessing as skp

    import nb2prod.features as F
    ours = F.FeaturePipeline([F.SimpleImputer(), F.ClipTransformer(lower=0.0, upper=8.0),
                              F.Log1pTransformer(), F.StandardScaler(), F.MinMaxScaler()],
                             device="cpu")
    theirs = skl.Pipeline([("impute", ski.SimpleImputer()),
                           ("clip", skp.FunctionTransformer(lambda x: np.clip(x, 0.0, 8.0))),
                           ("log", skp.FunctionTransformer(np.log1p)),
                           ("std", skp.StandardScaler()), ("mm", skp.MinMaxScaler())])
    return ours, theirs


def gpu_section(X: np.ndarray, ours: Any, repeat: int, peak: float) -> list[str]:
    from nb2prod.features.device import gpu_available
    if not gpu_available():
        return ["No GPU could be had in this session (no usable CuPy/CUDA device), so there "
                "are no GPU numbers. Run this script on a GPU machine to fill this section."]
    import cupy
    import nb2prod.features as F
    g = F.FeaturePipeline(ours.steps, device="gpu")
    g.n_features_in_ = ours.n_features_in_
    xg = cupy.asarray(X)
    sync = cupy.cuda.Device().synchronize

    def run(f: Callable[[], Any]) -> Callable[[], None]:
        return lambda: (f(), sync())
    run(lambda: g.transform(xg))()
    t_fused = best(run(lambda: g.transform(xg)), repeat)
    t_steps = best(run(lambda: g.transform_unfused(xg)), repeat)
    gbs = 2 * X.nbytes / t_fused / 1e9
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return [f"Device: {name}", "", "| path | transform s |", "|---|---|",
            f"| CuPy step-by-step | {t_steps:.4f} |", f"| CuPy fused kernel | {t_fused:.4f} |",
            "", f"* fused vs CuPy step-by-step: **{t_steps / t_fused:.1f}x**",
            f"* fused kernel bandwidth: {gbs:.0f} GB/s = {100 * gbs / peak:.0f}% of the "
            f"{peak:.0f} GB/s peak used (--peak-gbs)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--cols", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peak-gbs", type=float, default=3350.0, help="GPU peak memory bandwidth")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results_features.md"))
    a = ap.parse_args()

    X = make_data(a.rows, a.cols)
    ours, theirs = chains()
    t_fit_sk = best(lambda: theirs.fit(X), 1)
    t_fit_nb = best(lambda: ours.fit(X), 1)
    # Same result as scikit-learn where no value was imputed (sklearn averages float32 in
    # float32 for the imputer mean; nb2prod accumulates in float64, so imputed cells differ).
    head = X[:100_000]
    keep = ~np.isnan(head)
    np.testing.assert_allclose(ours.transform(head)[keep], theirs.transform(head)[keep],
                               rtol=1e-4, atol=1e-5)
    t_sk = best(lambda: theirs.transform(X), a.repeat)
    t_steps = best(lambda: ours.transform_unfused(X), a.repeat)
    t_fused = best(lambda: ours.transform(X), a.repeat)
    import sklearn
    lines = [
        "# nb2prod.features benchmark", "",
        f"`python benchmarks/bench_features.py --rows {a.rows} --cols {a.cols} "
        f"--repeat {a.repeat}`", "",
        f"Data: {a.rows:,} rows x {a.cols} float32 features ({X.nbytes / 1e9:.2f} GB), 2% NaN. "
        "Chain: SimpleImputer(mean) -> clip[0, 8] -> log1p -> StandardScaler -> MinMaxScaler. "
        f"Best of {a.repeat} transform runs; fit timed once.", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"NumPy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"Python {platform.python_version()}.", "",
        "## CPU", "", "| path | fit s | transform s | transform vs sklearn |", "|---|---|---|---|",
        f"| scikit-learn Pipeline | {t_fit_sk:.3f} | {t_sk:.3f} | 1.0x |",
        f"| nb2prod step-by-step | {t_fit_nb:.3f} | {t_steps:.3f} | {t_sk / t_steps:.2f}x |",
        f"| nb2prod fused NumPy | (same fit) | {t_fused:.3f} | {t_sk / t_fused:.2f}x |", "",
        f"* fused NumPy vs nb2prod step-by-step: **{t_steps / t_fused:.2f}x**",
        f"* fit, nb2prod vs scikit-learn: {t_fit_sk / t_fit_nb:.2f}x", "",
        "## GPU", "", *gpu_section(X, ours, a.repeat, a.peak_gbs), "",
    ]
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
