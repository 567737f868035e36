"""What one stage attempt produces, as it crosses from the Ray worker to the coordinator, the run store
and every front end: :class:`StageError` and :class:`StageResult`. Their ``to_dict()`` forms are the JSON
shapes of the run record (``stages.NAME.error``), ``run --json`` and REST."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MASK = "***"


@dataclass
class StageError:
    """Why a stage failed: exception type, message, notebook cell index and line (when known)."""

    type: str
    message: str
    cell_index: int | None = None
    line: int | None = None
    traceback: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def as_run_error(self, stage: str) -> dict[str, Any]:
        """This error as its run's error (a run record's ``error``): the same fields and the failed stage."""
        return {"stage": stage, **self.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "StageError | None":
        if not data:
            return None
        return cls(data.get("type") or "Error", data.get("message") or "", data.get("cell_index"),
                   data.get("line"), data.get("traceback") or "")


def location(error: dict[str, Any] | StageError | None) -> str:
    """``cell 4, line 2`` (the notebook cell index as in ``nb2prod check``); "" when no cell is known."""
    if isinstance(error, StageError):
        error = error.to_dict()
    if not error or error.get("cell_index") is None:
        return ""
    return f"cell {error['cell_index']}" + (f", line {error['line']}" if error.get("line") else "")


@dataclass
class StageResult:
    """One stage attempt's outcome: status, captured cells (notebook outputs by cell index), metrics, log."""

    status: str  # a StageStatus value
    cells: dict[int, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    log: str = ""
    error: StageError | None = None
    started_at: float | None = None
    ended_at: float | None = None
    system_retries: int = 0
    cached_from: str | None = None
    duration_s: float | None = None
    files: dict[str, bytes] | None = None  # the stage directory's files, logged as artifacts of its run
    profiles: dict[str, Any] | None = None  # monitor:VAR -> data profile (drift)
    models: dict[str, Any] | None = None  # register:VAR -> packed model
    logged: dict[str, Any] | None = None  # stage code's own MLflow calls, kept by nb2prod.tracking.stagestore
    stored: bool = False  # its worker wrote its outputs to the stage cache

    @classmethod
    def failed(cls, error: StageError, **kw: Any) -> "StageResult":
        return cls("failed", error=error, **kw)

    @classmethod
    def from_dict(cls, meta: dict[str, Any]) -> "StageResult":
        """The result a stage's worker sends (``runner/stage.py``'s dict), typed."""
        names = {f.name for f in dataclasses.fields(cls)} - {"error"}
        return cls(**{k: v for k, v in meta.items() if k in names}, error=StageError.from_dict(meta.get("error")))


def mask(value: Any, secrets: list[str]) -> Any:
    """``value`` with every secret string replaced by ``***`` (strings, and inside dicts and lists)."""
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, secrets) for v in value]
    return value
