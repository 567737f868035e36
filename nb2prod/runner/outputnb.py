"""The executed output notebook, shaped like papermill's.

An ``injected-parameters`` cell follows the parameters cell (or opens the notebook; one the notebook had, from an
earlier execution, is replaced), each executed cell carries its outputs at its own index, and papermill-style
metadata records start, end, duration and status per cell and for the notebook.
"""

from __future__ import annotations

import copy
from typing import Any

import nbformat


def build_output_notebook(notebook: dict[str, Any], parameters_cell: int | None, parameters: dict[str, Any],
                          cells: dict[int, dict[str, Any]], *, start: str, end: str, duration: float,
                          failed_error: dict[str, Any] | None, input_path: str,
                          output_path: str | None) -> nbformat.NotebookNode:
    """Merge per-cell results (``{index: {outputs, start, end, duration, status}}``) into the notebook."""
    nb = nbformat.from_dict(copy.deepcopy(notebook))
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        result = cells.get(index) or cells.get(str(index))
        cell.outputs = [nbformat.from_dict(o) for o in (result or {}).get("outputs", [])]
        cell.execution_count = index if result else None
        cell.metadata["papermill"] = {
            "start_time": (result or {}).get("start"), "end_time": (result or {}).get("end"),
            "duration": (result or {}).get("duration"), "status": (result or {}).get("status", "pending"),
            "exception": (result or {}).get("status") == "failed",
        }
    injected = nbformat.v4.new_code_cell(
        "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in parameters.items()),
        metadata={"tags": ["injected-parameters"]})
    anchor = nb.cells[parameters_cell] if parameters_cell is not None else None
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]  # as papermill
    nb.cells.insert(0 if anchor is None else next(i for i, c in enumerate(nb.cells) if c is anchor) + 1, injected)
    nb.metadata["papermill"] = {
        "parameters": parameters, "start_time": start, "end_time": end, "duration": duration,
        "exception": failed_error is not None, "input_path": input_path, "output_path": output_path,
        "environment_variables": {}, "version": "nb2prod",
    }
    return nb
