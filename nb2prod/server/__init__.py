"""Jupyter server extension: nb2prod's REST API under ``/nb2prod/`` (see ``handlers.py``).

Importing this module is cheap: jupyter_server and the handlers are imported when the server loads it.
Configure with ``c.Nb2ProdServer.mlflow_ui_url = "http://mlflow.example:5000"``.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nb2prod.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # Relative to the ``nb2prod`` package directory (this is re-exported from ``nb2prod``).
    return [{"src": "labextension", "dest": "nb2prod"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from nb2prod.server.handlers import setup_handlers

    setup_handlers(serverapp)
