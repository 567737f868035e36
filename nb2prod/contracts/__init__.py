"""The contracts between nb2prod's layers and processes: a leaf package (stdlib only, cheap to import).

| contract | module |
|---|---|
| ``RunOptions`` and its field metadata (CLI flags, help, front ends, JSON kind) | ``options.py`` |
| ``StageError``, ``StageResult``, the secret mask | ``results.py`` |
| ``RunEvent`` and its kinds (``queued``/``running``/``retrying`` are kinds, not statuses) | ``events.py`` |
| ``RunRecord`` (the run record's shape), successful statuses, the MLflow UI link, the gate / drift /
promotion outcome as lines | ``records.py`` |
"""

from nb2prod.contracts.events import EventKind, RunEvent
from nb2prod.contracts.options import RunOptions
from nb2prod.contracts.records import SUCCESSFUL, RunRecord, StageRecord, mlflow_link, outcome_lines, succeeded
from nb2prod.contracts.results import MASK, StageError, StageResult, location, mask

__all__ = ["EventKind", "RunEvent", "RunOptions", "SUCCESSFUL", "RunRecord", "StageRecord", "mlflow_link",
           "outcome_lines", "succeeded", "MASK", "StageError", "StageResult", "location", "mask"]
