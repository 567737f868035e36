"""Helpers for the magics tests: build a notebook, execute it in a real ipykernel (nbclient), read its
outputs and the widget models' state that nbclient recorded from the comm messages."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def write_notebook(path: Path, cells: list[str | tuple[str, list[str]]]) -> Path:
    """Code cells given as source or (source, tags)."""
    built = []
    for cell in cells:
        source, tags = (cell, []) if isinstance(cell, str) else cell
        built.append(new_code_cell(source, metadata={"tags": tags} if tags else {}))
    nbformat.write(new_notebook(cells=built, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                      "language": "python"}}), path)
    return path


def execute(path: Path, *, session: bool = False, env: dict[str, str] | None = None, timeout: int = 240):
    """Execute the notebook at ``path`` in a fresh kernel whose cwd is its directory.

    ``session=True`` starts the kernel the way jupyter_server does for this notebook (``JPY_SESSION_NAME``).
    Returns the executed notebook (also written back to ``path``, as a frontend's save would).
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    kernel_env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "NB2PROD_WIDGETS")}
    if session:
        kernel_env["JPY_SESSION_NAME"] = str(path)
    kernel_env.update(env or {})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=kernel_env)
    return nb


def text(cell, name: str = "stdout") -> str:
    """A cell's stream output (``stdout``/``stderr``), ANSI colours removed."""
    return ANSI.sub("", "".join(o["text"] for o in cell["outputs"] if o["output_type"] == "stream"
                                and o["name"] == name))


def data(cell, mime: str) -> list[str]:
    """A cell's display/execute_result payloads of one MIME type."""
    return [o["data"][mime] for o in cell["outputs"] if o["output_type"] in ("display_data", "execute_result")
            and mime in o.get("data", {})]


def errors(cell) -> list[dict[str, Any]]:
    return [o for o in cell["outputs"] if o["output_type"] == "error"]


def failure(cell) -> str:
    """What a failed magic showed: IPython's one-line UsageError on stderr, or nb2prod's ``error: ...`` output."""
    shown = text(cell, "stderr") + "".join(ANSI.sub("", line) + "\n" for e in errors(cell) for line in e["traceback"])
    assert shown, cell["outputs"]
    return shown


class Widgets:
    """The widget state nbclient recorded (``metadata.widgets``), navigable from a displayed view."""

    def __init__(self, nb) -> None:
        self.state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json",
                                                        {}).get("state", {})

    def model(self, model_id: str) -> dict[str, Any]:
        return self.state[model_id.removeprefix("IPY_MODEL_")]

    def displayed(self, cell) -> list[str]:
        """Model ids of the widgets a cell displayed."""
        return [d["model_id"] for d in data(cell, "application/vnd.jupyter.widget-view+json")]

    def ids(self, model_id: str):
        """The model's id and those of every model below it (children, and widgets an Output displayed)."""
        model_id = model_id.removeprefix("IPY_MODEL_")
        yield model_id
        state = self.model(model_id)["state"]
        for child in state.get("children", []):
            yield from self.ids(child)
        for output in state.get("outputs", []):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view:
                yield from self.ids(view["model_id"])

    def walk(self, model_id: str):
        """The model and every model below it."""
        return (self.model(i) for i in self.ids(model_id))

    def with_class(self, model_id: str, cls: str) -> list[dict[str, Any]]:
        return [m for m in self.walk(model_id) if cls in m["state"].get("_dom_classes", [])]

    def html(self, model_id: str) -> str:
        """Every HTML widget's value below ``model_id``, concatenated."""
        return "\n".join(m["state"].get("value", "") for m in self.walk(model_id) if m["model_name"] == "HTMLModel")

    def stage_statuses(self, model_id: str) -> dict[str, str]:
        found = re.findall(r'class="nb2prod-status" data-stage="([^"]+)" data-status="([^"]+)"', self.html(model_id))
        return dict(found)

    def run_status(self, model_id: str) -> str | None:
        m = re.search(r'class="nb2prod-run-status" data-status="([^"]+)"', self.html(model_id))
        return m.group(1) if m else None


def pipeline_cells(unique: str) -> list:
    """The cells of a small pipeline; ``unique`` goes into the code so no other test shares its cache keys."""
    return [
        ("scale = 2\nfail = False", ["parameters"]),
        f"%%stage first\na = list(range(5))  # {unique}",
        ("print('scaling by', scale)\nif fail:\n    raise ValueError('boom')\nb = [v * scale for v in a]",
         ["stage:second"]),
        "%%stage third --retries 1\nc = sum(b)\nprint('sum is', c)",
    ]


@pytest.fixture
def pipeline(tmp_path) -> Path:
    """A small pipeline notebook: parameters, three chained stages (``%%stage`` and tags), one may fail."""
    return write_notebook(tmp_path / "chain.ipynb", pipeline_cells(tmp_path.name))
