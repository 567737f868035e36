"""Parse-time benchmark: notebook → validated spec for a 300-cell notebook (target < 100 ms).

    python benchmarks/bench_parse.py [--cells 300] [--out benchmarks/results_parse.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nb2prod.core.builder import build_spec

ROOT = Path(__file__).resolve().parents[1]
CELL = """import numpy as np
def helper_{i}(values, k={i}):
    return [v * k for v in values if v > threshold]
data_{i} = helper_{i}(data_{p}) if {i} % 3 else [x + 1 for x in data_{p}]
frame_{i} = {{"a": data_{i}, "b": len(data_{i})}}
frame_{i}["c"] = sum(data_{i})
%matplotlib inline
"""


def notebook(cells: int) -> Path:
    items = [new_code_cell("threshold = 0.5\nn = 10", metadata={"tags": ["parameters"]}),
             new_code_cell("data_0 = list(range(n))", metadata={"tags": ["stage:s0"]})]
    for i in range(1, cells - 1):
        tags = [f"stage:s{i}"] if i % 10 == 0 else []
        items.append(new_markdown_cell(f"## step {i}") if i % 7 == 0 else
                     new_code_cell(CELL.format(i=i, p=i - 2 if i > 1 and (i - 1) % 7 == 0 else i - 1),
                                   metadata={"tags": tags}))
    path = Path(tempfile.mkdtemp()) / "big.ipynb"
    nbformat.write(new_notebook(cells=items), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_parse.md")
    args = parser.parse_args()
    path = notebook(args.cells)
    spec = build_spec(path)
    assert not spec.errors, spec.errors[:3]
    times = []
    for _ in range(20):
        t = time.perf_counter()
        build_spec(path)
        times.append((time.perf_counter() - t) * 1000)
    median = statistics.median(times)
    text = (f"# Parse benchmark\n\n`python benchmarks/bench_parse.py` on {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d')}: `build_spec` of a {args.cells}-cell notebook ({len(spec.stages)} stages, "
            f"magics, helpers, comprehensions), median of 20.\n\n| measure | result | target | met |\n|---|---|---|---|\n"
            f"| notebook → validated spec | {median:.1f} ms | < 100 ms | {'✅' if median < 100 else '❌'} |\n")
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
