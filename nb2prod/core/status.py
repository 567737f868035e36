"""Run and stage status enums, and how they map onto MLflow run statuses.

| nb2prod run status | MLflow parent run |      | nb2prod stage status | MLflow stage run        |
|--------------------|-------------------|------|----------------------|-------------------------|
| running            | RUNNING           |      | running              | RUNNING                 |
| done               | FINISHED          |      | done, cached         | FINISHED                |
| failed             | FAILED            |      | failed               | FAILED                  |
| cancelled          | KILLED            |      | cancelled            | KILLED                  |
| interrupted        | FAILED            |      | pending, skipped     | (no stage run)          |
"""

from __future__ import annotations

from enum import Enum


class StageStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CACHED = "cached"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (StageStatus.PENDING, StageStatus.RUNNING)

    @property
    def mlflow_status(self) -> str | None:
        return _STAGE_TO_MLFLOW.get(self)


class RunStatus(str, Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING

    @property
    def mlflow_status(self) -> str:
        return _RUN_TO_MLFLOW[self]


_RUN_TO_MLFLOW = {
    RunStatus.RUNNING: "RUNNING",
    RunStatus.DONE: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELLED: "KILLED",
    RunStatus.INTERRUPTED: "FAILED",
}
_STAGE_TO_MLFLOW = {
    StageStatus.RUNNING: "RUNNING",
    StageStatus.DONE: "FINISHED",
    StageStatus.CACHED: "FINISHED",
    StageStatus.FAILED: "FAILED",
    StageStatus.CANCELLED: "KILLED",
}
