"""The events a run streams from the coordinator to its driver and the live views.

``queued``, ``running`` and ``retrying`` are event kinds (steps of a stage attempt), never statuses:
a ``stage`` event carries a final :class:`~nb2prod.core.status.StageStatus` value in ``status``, an
``end`` event the :class:`~nb2prod.core.status.RunStatus`. Every consumer reads events through
:class:`RunEvent` and :meth:`RunEvent.progress`, so a kind is parsed in one place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from nb2prod.contracts.results import StageError


class EventKind(str, Enum):
    RUN = "run"  # the MLflow parent run exists (mlflow_run_id, experiment_id)
    STAGE_MLFLOW = "stage_mlflow"  # a stage's MLflow run exists (stage, mlflow_run_id)
    QUEUED = "queued"  # a stage attempt was submitted (attempt, gpu_fallback)
    RUNNING = "running"  # an attempt started in its worker (attempt, started_at, system_retries, node)
    RETRYING = "retrying"  # an attempt failed and another follows (attempt, error, retry_in_s)
    STAGE = "stage"  # a stage reached a final status (status, attempt, times, error, ...)
    LOG = "log"  # a stage's output lines, with --log-output (stream, text)
    END = "end"  # the run ended (status: a RunStatus value)


@dataclass
class RunEvent:
    """One event of a run; only the fields its kind uses are set."""

    kind: EventKind
    stage: str | None = None
    status: str | None = None
    attempt: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    duration_s: float | None = None
    error: StageError | None = None
    system_retries: int = 0
    retry_in_s: float | None = None
    gpu_fallback: bool = False
    cached_from: str | None = None
    node: str | None = None
    mlflow_run_id: str | None = None
    experiment_id: str | None = None
    stream: str | None = None
    text: str = ""
    t: float = field(default_factory=time.time)

    def progress(self) -> dict[str, Any]:
        """What this event changes in a live view of its stage: ``status`` as shown (a StageStatus value, or
        ``queued`` / ``retrying``), ``attempt``, ``started_at``, ``duration_s``, ``error``; {} for other kinds."""
        if self.kind is EventKind.STAGE:
            shown = self.status
        elif self.kind in (EventKind.QUEUED, EventKind.RUNNING, EventKind.RETRYING):
            shown = self.kind.value
        else:
            return {}
        update: dict[str, Any] = {"status": shown}
        if self.attempt:
            update["attempt"] = self.attempt
        if self.kind is EventKind.RUNNING:
            update["started_at"] = self.started_at or self.t
        if self.duration_s is not None:
            update["duration_s"] = self.duration_s
        if self.error is not None:
            update["error"] = self.error.to_dict()
        return update
