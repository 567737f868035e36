"""The run record every front end reads (``api.get_run``, ``GET /nb2prod/runs/{id}``, ``nb2prod status
--json``), and the small rules about it that front ends share."""

from __future__ import annotations

import os
from typing import Any, TypedDict


# Stage statuses whose outputs exist (a downstream stage, `%nb2prod pull` and resume can use them).
SUCCESSFUL = ("done", "cached")
MLFLOW_UI_ENV = "NB2PROD_MLFLOW_UI_URL"


class StageRecord(TypedDict, total=False):
    status: str
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    attempts: int
    system_retries: int
    cached: bool
    cache_key: str | None
    mlflow_run_id: str | None
    error: dict[str, Any] | None  # StageError.to_dict()


class RunRecord(TypedDict, total=False):
    id: str
    notebook: str
    status: str  # a RunStatus value
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    parameters: dict[str, Any]
    options: dict[str, Any]  # RunOptions.to_dict(), secrets masked
    mlflow_run_id: str | None
    mlflow_experiment_id: str | None
    tracking_uri: str | None
    mlflow_url: str | None
    error: dict[str, Any] | None  # {stage, **StageError.to_dict()} of the first failed stage
    origin: str
    stages: dict[str, StageRecord]


def mlflow_link(record: dict[str, Any], base: str | None = None) -> str | None:
    """The URL of a run's page in the MLflow UI, where one can be known: the record's own ``mlflow_url``,
    else ``base`` (a UI setting), ``$NB2PROD_MLFLOW_UI_URL``, or the run's http(s) tracking server."""
    if record.get("mlflow_url"):
        return record["mlflow_url"]
    run, experiment = record.get("mlflow_run_id"), record.get("mlflow_experiment_id")
    uri = record.get("tracking_uri") or ""
    base = base or os.environ.get(MLFLOW_UI_ENV) or (uri if uri.startswith(("http://", "https://")) else "")
    if not (base and run):
        return None
    return f"{base.rstrip('/')}/#/experiments/{experiment or 0}/runs/{run}"


def succeeded(record: dict[str, Any]) -> bool:
    """Whether a finished run succeeded: done, and no gate failed (the CLI's exit 0, a magic's passing cell)."""
    return record["status"] == "done" and (record.get("gate") or {}).get("status") != "failed"


def outcome_lines(record: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(level, text)]`` with level ``ok``, ``bad`` or ``warn``: why the run failed when no stage says so (its
    output notebook could not be written, its coordinator failed), then its gates, drift checks and promotion."""
    lines = []
    error = record.get("error")
    if error and not error.get("stage"):
        lines.append(("bad", f"error: {error.get('type')}: {error.get('message')}"))
    gate = record.get("gate") or {}
    if gate.get("status") in ("passed", "failed"):
        lines.append(("ok" if gate["status"] == "passed" else "bad", f"gate {gate['status']}: {gate['reason']}"))
    drift = record.get("drift")
    if drift:
        lines.append(("bad", f"drifted: {drift['reason']}") if drift["drifted"] else ("ok", f"no drift: {drift['reason']}"))
    promotion = record.get("promotion")
    if promotion:
        what = f"{promotion['model']} v{promotion['version']}" if promotion.get("model") else "no model"
        verdict = "promoted to" if promotion["moved"] else "not promoted to"
        lines.append(("ok" if promotion["moved"] else "warn",
                      f"{what} {verdict} {promotion['alias']}: {promotion['reason']}"))
    return lines
