"""The MLflow store stage code writes to when the cluster cannot reach the run's tracking store.

With a client-local store (the default SQLite file) and a cluster that cannot see it, a stage's own ``mlflow``
calls (``log_metric``, ``log_param``, ``set_tag``, ``log_artifact``, ``log_figure``...) go to this store
instead, through ``MLFLOW_TRACKING_URI=nb2prod-stage:`` (``nb2prod.runner.hooks.STAGE_STORE_URI``; the scheme is
registered in MLflow's ``mlflow.tracking_store`` entry point group, see pyproject.toml). It keeps the stage's run in the worker's memory: metrics with their steps and timestamps,
params and tags, recorded for :func:`take`, which the stage sends back with its result for the client to
write on the stage's run (:meth:`nb2prod.tracking.Tracker.log_recorded`). The run's artifact URI is the
stage's directory (:func:`nb2prod.runner.stage.stage_dir`), whose files already travel back as the run's
artifacts. What needs the store itself (other runs, experiments, searches, logged models) is refused with a
message that says what to use instead.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Experiment, LifecycleStage, Metric, Param, Run, RunData, RunInfo, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.abstract_store import AbstractStore

EXPERIMENT_ID = "0"
REFUSED = ("{what} needs a tracking server reachable from the cluster (`--tracking-uri http://…` or "
           "MLFLOW_TRACKING_URI): this cluster cannot reach the run's tracking store, a file on the client, so a "
           "stage's own MLflow calls are kept for its own run only. Models are registered with a `register:NAME` "
           "cell tag")

_lock = threading.Lock()
_runs: dict[str, dict[str, Any]] = {}  # run id -> {"metrics": [...], "params": {...}, "tags": {...}}


def take(run_id: str) -> dict[str, Any] | None:
    """What stage code logged on ``run_id`` (``metrics``: ``[key, value, timestamp, step]`` rows, ``params``,
    ``tags``), forgotten here; None when it logged nothing."""
    with _lock:
        logged = _runs.pop(run_id, None)
    return logged if logged and any(logged.values()) else None


class StageStore(AbstractStore):
    """One stage's MLflow run, in memory (see the module docstring)."""

    def __init__(self, store_uri: str | None = None, artifact_uri: str | None = None) -> None:
        super().__init__()

    def get_run(self, run_id: str) -> Run:
        logged = self._logged(run_id)
        latest: dict[str, Metric] = {}
        for key, value, timestamp, step in logged["metrics"]:
            if key not in latest or (step, timestamp) >= (latest[key].step, latest[key].timestamp):
                latest[key] = Metric(key, value, timestamp, step)
        info = RunInfo(run_id, EXPERIMENT_ID, "", RunStatus.to_string(RunStatus.RUNNING), int(time.time() * 1000),
                       None, LifecycleStage.ACTIVE, artifact_uri=_stage_dir().as_uri())
        return Run(info, RunData(list(latest.values()), [Param(k, v) for k, v in logged["params"].items()],
                                 [RunTag(k, v) for k, v in logged["tags"].items()]))

    def log_batch(self, run_id: str, metrics: list[Metric], params: list[Param], tags: list[RunTag]) -> None:
        logged = self._logged(run_id)
        with _lock:
            logged["metrics"].extend([m.key, float(m.value), int(m.timestamp), int(m.step or 0)] for m in metrics)
            for param in params:
                old = logged["params"].get(param.key)
                if old is not None and old != str(param.value):
                    raise MlflowException(f"param {param.key!r} was already logged as {old!r}; params are "
                                          f"logged once (tried {param.value!r})", error_code="INVALID_PARAMETER_VALUE")
                logged["params"][param.key] = str(param.value)
            logged["tags"].update((tag.key, str(tag.value)) for tag in tags)

    def update_run_info(self, run_id: str, run_status: Any, end_time: Any, run_name: Any) -> RunInfo:
        return self.get_run(run_id).info  # nb2prod ends the stage's run with the stage's status

    def get_metric_history(self, run_id: str, metric_key: str, max_results: int | None = None,
                           page_token: str | None = None) -> list[Metric]:
        return [Metric(*row) for row in self._logged(run_id)["metrics"] if row[0] == metric_key][:max_results]

    def get_experiment(self, experiment_id: str) -> Experiment:
        return Experiment(EXPERIMENT_ID, "nb2prod-stage", _stage_dir().as_uri(), LifecycleStage.ACTIVE)

    def log_inputs(self, run_id: str, datasets: Any = None, models: Any = None) -> None:
        """Dataset inputs (``mlflow.log_input``) are not kept: the store holding their records is out of reach."""

    def log_outputs(self, run_id: str, models: Any) -> None:
        self._refuse("Logging a model (`mlflow.<flavor>.log_model`)")

    def create_logged_model(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse("Logging a model (`mlflow.<flavor>.log_model`)")

    def create_run(self, *args: Any, **kwargs: Any) -> Run:
        self._refuse("Starting another run (`mlflow.start_run` with a new or nested run)")

    def create_experiment(self, *args: Any, **kwargs: Any) -> str:
        self._refuse("Creating an experiment")

    def get_experiment_by_name(self, experiment_name: str) -> Experiment | None:
        self._refuse("Choosing an experiment (`mlflow.set_experiment`)")

    def search_experiments(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse("Searching experiments")

    def _search_runs(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse("Searching runs")

    def delete_experiment(self, experiment_id: str) -> None:
        self._refuse("Deleting an experiment")

    def restore_experiment(self, experiment_id: str) -> None:
        self._refuse("Restoring an experiment")

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self._refuse("Renaming an experiment")

    def delete_run(self, run_id: str) -> None:
        self._refuse("Deleting a run")

    def restore_run(self, run_id: str) -> None:
        self._refuse("Restoring a run")

    def link_traces_to_run(self, trace_ids: list[str], run_id: str) -> None:
        self._refuse("Tracing")

    @staticmethod
    def _logged(run_id: str) -> dict[str, Any]:
        with _lock:
            return _runs.setdefault(run_id, {"metrics": [], "params": {}, "tags": {}})

    @staticmethod
    def _refuse(what: str) -> Any:
        raise MlflowException(REFUSED.format(what=what), error_code="INVALID_STATE")


def _stage_dir() -> Path:
    """The running stage's directory (``NB2PROD_STAGE_DIR``, set by the stage's worker)."""
    return Path(os.environ["NB2PROD_STAGE_DIR"])
