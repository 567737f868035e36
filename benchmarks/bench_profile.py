"""Drift-profile benchmark: ``build_profile`` (what ``monitor:VAR`` adds to a stage) on 10 M rows × 32 float32
columns, as a 2-D array and as a DataFrame, and the comparison with a reference profile.

    python benchmarks/bench_profile.py [--rows 10000000] [--runs 5] [--out benchmarks/results_profile.md]

Target: ≤ 1 s added per monitored variable of 10 M × 32 float32 (median).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from nb2prod.mlops.drift import compare
from nb2prod.mlops.profile import build_profile

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0


def timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_profile.md"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    array = rng.random((args.rows, 32), dtype=np.float32)  # uniform: quick to make; the cost does not depend on it
    frame = pd.DataFrame(array, columns=[f"f{i}" for i in range(32)], copy=False)
    reference = build_profile(array)
    shifted = array[:100_000] + np.float32(0.5)
    rows = [("`build_profile`, 2-D float32 array", timed(lambda: build_profile(array), args.runs)),
            ("`build_profile`, DataFrame of float32 columns", timed(lambda: build_profile(frame), args.runs)),
            ("`compare` with the reference (PSI + KS, 32 columns)",
             timed(lambda: compare("X", reference, build_profile(shifted)), args.runs))]
    load = os.getloadavg()[0]
    lines = ["# Drift-profile benchmark", "",
             f"`python benchmarks/bench_profile.py` on CPython {platform.python_version()}, {date.today()}, "
             f"{os.cpu_count()} cores, load average {load:.1f} at the end.", "",
             "| measure | median (max) of %d | target | met |" % args.runs, "|---|---|---|---|"]
    for label, times in rows:
        median = statistics.median(times)
        target = f"≤ {TARGET_S:g} s" if "build_profile" in label else "—"
        met = ("✅" if median <= TARGET_S else "❌") if "build_profile" in label else ""
        lines.append(f"| {label}, {args.rows:,} × 32 | {median:.3f} s ({max(times):.3f} s) | {target} | {met} |")
    lines += ["", "One pass over the data (a column sum: a NaN sum marks the columns whose missing values are then "
              "counted); deciles, frequencies and the stored sample come from 10,000 random rows."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
