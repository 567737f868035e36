"""Where nb2prod keeps its state: ``NB2PROD_HOME`` (default: the per-user data dir)."""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """``$NB2PROD_HOME`` or the platform's per-user data dir; created on first use."""
    env = os.environ.get("NB2PROD_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("nb2prod", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def run_dir(run_id: str) -> Path:
    """Per-run files: stage logs, the executed notebook, stage artifacts."""
    path = home_dir() / "runs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else one SQLite MLflow store under ``NB2PROD_HOME`` (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home_dir() / 'mlflow.db'}"
