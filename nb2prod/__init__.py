"""nb2prod: tagged Jupyter notebooks become parameterized, tracked pipelines on Ray and MLflow.

Importing this package is cheap; every entry point below imports what it needs when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"


def stage_dir() -> Path:
    """Inside a running stage: the directory whose files become artifacts of the stage's MLflow run."""
    from nb2prod.runner.stage import stage_dir as current

    return current()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nb2prod``: registers the ``%%stage`` and ``%nb2prod`` magics."""
    from nb2prod.notebook.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nb2prod``."""
    from nb2prod.notebook.magics import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nb2prod.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "nb2prod"}]
