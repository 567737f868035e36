"""The gpu_features example notebook: valid pipeline, runs top to bottom on CPU."""
from __future__ import annotations

from pathlib import Path

import nbformat

NB = Path(__file__).resolve().parents[2] / "example_notebooks" / "gpu_features.ipynb"


def test_tags_and_plain_run(monkeypatch) -> None:
    monkeypatch.setenv("NB2PROD_DEVICE", "cpu")  # what --gpu-fallback cpu sets
    nb = nbformat.read(NB, as_version=4)
    tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
    for tag in ("parameters", "setup", "stage:load", "stage:features", "gpu", "stage:train",
                "metrics"):
        assert tag in tags
    ns: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            src = cell.source.replace("n_rows = 100000", "n_rows = 5000")
            exec(compile(src, str(NB), "exec"), ns)
    assert ns["features"].device_ == "cpu" and ns["features"].fusable()
    assert 0.6 < ns["score"] <= 1.0


def test_spec_has_gpu_stage() -> None:
    from nb2prod import api
    spec = api.check(str(NB))
    assert not spec.get("errors"), spec.get("errors")
    assert "features" in spec["stages"]
