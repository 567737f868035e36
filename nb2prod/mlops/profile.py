"""A compact data profile of a DataFrame or 2-D array, built in the stage's worker (``monitor:VAR``).

Per column: type, count, missing, reference-decile bin edges and the frequencies in them, category
frequencies, and a sample of at most :data:`SAMPLE_ROWS` rows. One pass over the data (missing values);
the deciles and the sample come from ``SAMPLE_ROWS`` random rows, so 10 M rows cost what 10 k do.
"""

from __future__ import annotations

import base64
from typing import Any

SAMPLE_ROWS = 10_000
BINS = 10
MAX_CATEGORIES = 50
PROFILE_VERSION = 1
OTHER = "__other__"


def profileable(value: Any) -> bool:
    """Whether ``value`` is a DataFrame or a 2-D array (what ``monitor:`` accepts)."""
    if type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame":
        return True
    return getattr(value, "ndim", None) == 2 and hasattr(value, "dtype")


def build_profile(value: Any, seed: int = 0) -> dict[str, Any]:
    """The JSON-ready profile of ``value`` (a pandas DataFrame or a 2-D numpy/cupy array)."""
    import numpy as np

    if not profileable(value):
        raise TypeError(f"monitor: needs a DataFrame or a 2-D array, got {type(value).__name__}")
    if hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        value = value.get()
    rows = len(value)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(rows, SAMPLE_ROWS, replace=False)) if rows > SAMPLE_ROWS else np.arange(rows)
    columns: dict[str, Any] = {}
    if type(value).__module__.startswith("pandas"):
        import pandas as pd

        sample = value.iloc[picked]
        numeric = [n for n in value.columns if pd.api.types.is_numeric_dtype(value[n].dtype)
                   and not pd.api.types.is_bool_dtype(value[n].dtype)]
        missing = _missing_in_frame(value, numeric)
        for name in value.columns:
            col = value[name]
            if name in missing:
                columns[str(name)] = _numeric(sample[name].to_numpy(dtype="float64", na_value=np.nan), rows,
                                              missing[name], str(col.dtype))
            else:
                columns[str(name)] = _categorical(col, str(col.dtype))
        kind = "dataframe"
    else:
        array = np.asarray(value)
        kind = "array"
        if array.dtype.kind in "fiub":
            missing = _missing_per_column(array)
            sample = array[picked].astype("float64")
            for j in range(array.shape[1]):
                columns[str(j)] = _numeric(sample[:, j], rows, int(missing[j]), str(array.dtype))
        else:
            import pandas as pd

            for j in range(array.shape[1]):
                columns[str(j)] = _categorical(pd.Series(array[:, j]), str(array.dtype))
    return {"version": PROFILE_VERSION, "kind": kind, "rows": rows, "columns": columns}


def _missing_in_frame(frame, numeric: list) -> dict[Any, int]:
    """Missing values per numeric column of a DataFrame: its columns as one 2-D array where they share a numpy
    float dtype (a frame over one C-ordered array has strided columns, slow to reduce one by one), else column by
    column (nullable dtypes hold pd.NA)."""
    import numpy as np

    block = frame if len(numeric) == len(frame.columns) else frame[numeric]
    dtypes = set(block.dtypes)
    if len(dtypes) == 1 and isinstance(next(iter(dtypes)), np.dtype):
        return dict(zip(numeric, _missing_per_column(block.to_numpy()).tolist()))
    return {name: int(frame[name].isna().sum()) for name in numeric}


def _missing_per_column(array) -> Any:
    """NaN count per column: one summing pass (NaN propagates), exact counts only where a sum is NaN."""
    import numpy as np

    missing = np.zeros(array.shape[1], dtype=np.int64)
    if array.dtype.kind != "f" or not len(array):
        return missing
    suspects = np.flatnonzero(np.isnan(np.add.reduce(array, axis=0)))
    for j in suspects:
        missing[j] = int(np.count_nonzero(np.isnan(array[:, j])))
    return missing


def _numeric(sample, rows: int, missing: int, dtype: str) -> dict[str, Any]:
    import numpy as np

    present = sample[~np.isnan(sample)]
    edges = np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]).tolist() if len(present) else []
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=BINS) if len(present) else []
    freqs = (np.asarray(counts) / max(len(present), 1)).tolist()
    return {"type": "numeric", "dtype": dtype, "count": rows - missing, "missing": missing, "edges": edges,
            "frequencies": freqs, "sample": base64.b64encode(present.astype("<f8").tobytes()).decode()}


def _categorical(series, dtype: str) -> dict[str, Any]:
    counts = series.astype("object").value_counts(dropna=True)
    present = int(counts.sum())
    top = counts.iloc[:MAX_CATEGORIES]
    freqs = {str(k): int(v) / max(present, 1) for k, v in top.items()}
    if len(counts) > MAX_CATEGORIES:
        freqs[OTHER] = int(counts.iloc[MAX_CATEGORIES:].sum()) / max(present, 1)
    return {"type": "categorical", "dtype": dtype, "count": present, "missing": int(len(series) - present),
            "categories": freqs}


def sample_of(column: dict[str, Any]):
    """The numeric sample stored in a profile column, as a float64 array."""
    import numpy as np

    return np.frombuffer(base64.b64decode(column["sample"]), dtype="<f8")
