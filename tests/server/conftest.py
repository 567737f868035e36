"""Fixtures for the server-extension tests: pytest-jupyter's server fixtures (``jp_fetch`` etc.),
scoped to this directory, and a server root holding notebooks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures and hooks of pytest-jupyter

from tests.conftest import EXAMPLE, make_notebook

MLFLOW_UI = "http://mlflow.test:5000"
# Two validation errors: a cycle (no cell) and an undefined name pinned to cell 3.
CYCLE = [("x = 1", ["stage:first", "after:second"]), ("y = x", ["stage:second"]), ("print(1)", []),
         ("z = missing + 1", ["stage:third"])]


@pytest.fixture
def jp_server_config(nb2prod_home):  # noqa: F811 - overrides pytest-jupyter's fixture
    """A server with only the nb2prod extension, NB2PROD_HOME/MLflow pointed at the session's temp store."""
    return {"ServerApp": {"jpserver_extensions": {"nb2prod": True}},
            "Nb2ProdServer": {"mlflow_ui_url": MLFLOW_UI}}


@pytest.fixture
def root(jp_root_dir) -> Path:
    """The server root with the example pipeline, a cycle notebook and a broken file."""
    shutil.copy(EXAMPLE, jp_root_dir / "pipeline.ipynb")
    make_notebook(jp_root_dir / "cycle.ipynb", CYCLE)
    (jp_root_dir / "broken.ipynb").write_text("this is not JSON")
    return jp_root_dir


async def fetch_json(jp_fetch, *parts, **kwargs):
    """``jp_fetch`` returning (status, decoded JSON) for 2xx and 4xx/5xx answers alike."""
    from tornado.httpclient import HTTPClientError

    try:
        response = await jp_fetch(*parts, **kwargs)
    except HTTPClientError as exc:
        response = exc.response
        assert response is not None, exc
    return response.code, json.loads(response.body or b"null")
