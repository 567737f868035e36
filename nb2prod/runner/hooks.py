"""Lifecycle hooks of a run, as papermill's engines have them (``notebook_start``, ``cell_start``, ...).

The DAG loop (:mod:`nb2prod.runner.orchestrator`) only steps the pipeline and calls, on every hook of its
list, in order:

    on_run_start(run)                         the run begins
    on_stage_start(run, stage, payload)       an attempt is about to be submitted (a hook may amend payload)
    on_stage_retry(run, stage, result, delay) an attempt failed and another follows after ``delay`` s
    on_stage_end(run, stage, result)          a stage reached its final status (``result.status``)
    on_run_end(run, outcome)                  the run ended; ``outcome`` collects what hooks add

Everything else is a hook: MLflow tracking (:class:`Tracking`), registration / drift / gates
(:class:`Mlops`), cache writes (:class:`CacheWrites`), the executed notebook (:class:`OutputNotebook`)
and the event stream (:class:`EventStream`). Subclass :class:`RunHooks` (every method a no-op) to plug in
more. Order matters where one hook reads what another wrote (see :func:`default_hooks`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from nb2prod.contracts import EventKind, RunEvent, StageResult
from nb2prod.core.status import RunStatus, StageStatus

CACHE_WRITE_WAIT_S = 120.0
STAGE_STORE_URI = "nb2prod-stage:"  # nb2prod.tracking.stagestore's scheme (an MLflow tracking-store entry point)


@dataclass
class RunContext:
    """One run as the hooks see it; hooks fill in what later hooks and the DAG loop read."""

    run_id: str
    name: str  # the MLflow parent run's name: the notebook's stem
    experiment: str
    tags: dict[str, str]
    params: dict[str, Any]  # the parameters as they may be shown (secrets masked)
    emit: Callable[[RunEvent], None]  # one event of the run's stream
    attempts: dict[str, int]
    relay: Callable[..., None] | None = None  # work for the client's driver (runner/relay.py)
    request: Any = None  # a pipeline run's RunRequest (None for a notebook-mode run)
    results: dict[str, StageResult] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)  # stage -> object ref of its outputs
    gpu_fallback: set[str] = field(default_factory=set)  # stages placed on CPU for want of GPUs
    started: float = field(default_factory=time.time)
    mlflow_run_id: str | None = None
    experiment_id: str | None = None
    stage_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # added by hooks (drift)
    skip: set[str] = field(default_factory=set)  # stages a hook forbids to run (--fail-on-drift)
    failure: dict[str, Any] | None = None  # a hook's reason to fail a run whose stages succeeded

    @property
    def spec(self):
        return self.request.spec

    @classmethod
    def of(cls, request, emit: Callable[[RunEvent], None], relay: Callable[..., None]) -> "RunContext":
        """The context of a pipeline run."""
        return cls(request.run_id, Path(request.spec.notebook).stem, request.experiment, request.tags,
                   request.shown_parameters, emit, {name: 0 for name in request.spec.stages}, relay, request)


@dataclass
class RunOutcome:
    """How a run ended, and what hooks add (``texts``: artifacts of the MLflow parent run; ``checks``: keys
    of the run's result, e.g. gate / promotion / drift)."""

    status: RunStatus
    ended: float
    error: dict[str, Any] | None  # {stage, **StageError.to_dict()} of the first failed stage
    metrics: dict[str, float]
    texts: dict[str, str] = field(default_factory=dict)
    output_notebook: str | None = None  # the executed notebook's JSON
    checks: dict[str, Any] = field(default_factory=dict)


class RunHooks:
    """Base of the lifecycle hooks: every method does nothing."""

    def on_run_start(self, run: RunContext) -> None:
        """The run begins."""

    def on_stage_start(self, run: RunContext, stage: str, payload: Any) -> None:
        """An attempt of ``stage`` is about to be submitted (``payload``: its StagePayload)."""

    def on_stage_retry(self, run: RunContext, stage: str, result: StageResult, delay: float) -> None:
        """An attempt of ``stage`` failed (``result``); another starts after ``delay`` seconds."""

    def on_stage_end(self, run: RunContext, stage: str, result: StageResult) -> None:
        """``stage`` reached its final status, ``result.status``."""

    def on_run_end(self, run: RunContext, outcome: RunOutcome) -> None:
        """The run ended."""


def call(hooks: list[RunHooks], method: str, *args: Any) -> None:
    """Call ``method`` on every hook, in order."""
    for hook in hooks:
        getattr(hook, method)(*args)


def default_hooks(request, tracker) -> list[RunHooks]:
    """A pipeline run's hooks. The output notebook is built before tracking logs it; drift is compared and
    models are queued for registration before tracking ends a stage's run; events come last, after what they
    report is written (the end event once the cache writes are done)."""
    from nb2prod.mlops import hooks as mlops

    tracking = Tracking(tracker)
    mlops_hook = [Mlops(mlops.MlopsHooks(request, tracker), tracking)] \
        if mlops.enabled(request.spec, request) else []
    return [OutputNotebook(), *mlops_hook, tracking, CacheWrites(), EventStream()]


class EventStream(RunHooks):
    """Streams the run's progress as :class:`RunEvent`\ s (the driver mirrors them into the run store); the MLflow
    ids (``RUN``, ``STAGE_MLFLOW``) come from :class:`Tracking` once the runs exist."""

    def on_stage_start(self, run: RunContext, stage: str, payload: Any) -> None:
        run.emit(RunEvent(EventKind.QUEUED, stage=stage, attempt=run.attempts[stage],
                          gpu_fallback=stage in run.gpu_fallback))

    def on_stage_retry(self, run: RunContext, stage: str, result: StageResult, delay: float) -> None:
        run.emit(RunEvent(EventKind.RETRYING, stage=stage, attempt=run.attempts[stage], error=result.error,
                          retry_in_s=delay))

    def on_stage_end(self, run: RunContext, stage: str, result: StageResult) -> None:
        if result.status == StageStatus.CACHED.value:
            event = RunEvent(EventKind.STAGE, stage=stage, status=result.status, duration_s=0.0,
                             cached_from=result.cached_from)
        elif result.status == StageStatus.SKIPPED.value:
            event = RunEvent(EventKind.STAGE, stage=stage, status=result.status)
        else:
            event = RunEvent(EventKind.STAGE, stage=stage, status=result.status, attempt=run.attempts[stage],
                             started_at=result.started_at, ended_at=result.ended_at, duration_s=result.duration_s,
                             error=result.error, system_retries=result.system_retries)
        run.emit(event)

    def on_run_end(self, run: RunContext, outcome: RunOutcome) -> None:
        run.emit(RunEvent(EventKind.END, status=outcome.status.value))


class Tracking(RunHooks):
    """MLflow through one Tracker: a parent run per run and, with ``stage_runs``, a child run per stage. Every
    write, the parent run's creation included, goes to one ordered writer thread, off the DAG loop's critical
    path: the first stages start while a new coordinator still imports MLflow or creates the store. The
    ``RUN`` event says when the parent run exists; a failure to create it ends the run at the next hook.

    A stage's run is created as the stage starts (RUNNING in MLflow while it runs); when the writer is behind
    (short stages) and the stage already ended by the time its run is created, the run is created with its final
    tags: one write fewer of MLflow's ~6 ms each. A stage run starts when the stage was submitted (or, created
    after it ended, when it started) and ends when the stage ended: MLflow's Duration is the stage's."""

    def __init__(self, tracker, stage_runs: bool = True) -> None:
        self.tracker, self.stage_runs = tracker, stage_runs
        self.children: dict[str, Future] = {}
        self.ended: dict[str, tuple[dict[str, str], float | None]] = {}  # stage -> final tags, start time
        self.folded: set[str] = set()  # stages whose run was created with their final tags (on the writer)
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")
        self.parent: Future | None = None

    def on_run_start(self, run: RunContext) -> None:
        def start() -> None:
            run.experiment_id = self.tracker.experiment_id(run.experiment)
            run.mlflow_run_id = self.tracker.start_run(run.experiment_id, run.name, run.tags, params=run.params)
            run.emit(RunEvent(EventKind.RUN, mlflow_run_id=run.mlflow_run_id, experiment_id=run.experiment_id))

        self.parent = self.writer.submit(start)

    def started(self) -> bool:
        """Wait for the parent run's creation; whether it exists."""
        return self.parent is not None and self.parent.exception() is None

    def require(self) -> None:
        """Wait for the parent run; raise what creating it raised."""
        self.parent.result()

    def _check(self) -> None:
        """Raise, in the DAG loop, what creating the parent run raised."""
        if self.parent is not None and self.parent.done():
            self.parent.result()

    def on_stage_start(self, run: RunContext, stage: str, payload: Any) -> None:
        self._check()
        if not self.stage_runs:
            return
        if stage not in self.children:
            tags = {"nb2prod.kind": "stage", "nb2prod.stage": stage, "nb2prod.run_id": run.run_id}
            if stage in run.gpu_fallback:
                tags["nb2prod.gpu_fallback"] = "true"
            self._child(run, stage, tags, time.time())
        spec = run.spec
        if any("mlflow" in spec.cells[i].source for i in [*spec.stages[stage].cells, *spec.setup_cells]):
            # the stage logs into its own run; a cluster that cannot reach the store keeps it (tracking/stagestore)
            payload.mlflow = {"tracking_uri": STAGE_STORE_URI, "run_id": uuid.uuid4().hex} if self.tracker.relayed \
                else {"tracking_uri": self.tracker.uri, "run_id": self.children[stage].result()}

    def on_stage_end(self, run: RunContext, stage: str, result: StageResult) -> None:
        self._check()
        if not self.stage_runs:
            return
        if result.status == StageStatus.CACHED.value:
            self._child(run, stage, {"nb2prod.kind": "stage", "nb2prod.stage": stage,
                                     "nb2prod.run_id": run.run_id, "nb2prod.cached": "true",
                                     "nb2prod.cached_from": str(result.cached_from)})
            metrics = result.metrics
            self.write(stage, lambda child: self.tracker.end_run(child, "FINISHED", metrics))
            return
        if result.status == StageStatus.SKIPPED.value or stage not in self.children:
            return  # never submitted (skipped, or no node could run it): no run to end
        status = StageStatus(result.status)
        tags = {"nb2prod.status": status.value, "nb2prod.attempts": str(run.attempts[stage])}
        if result.error:
            tags["nb2prod.error"] = json.dumps({k: v for k, v in result.error.to_dict().items() if k != "traceback"})
        texts = {f"logs/{stage}.log": result.log} if result.log else None
        files = result.files or None
        self.ended[stage] = (tags, result.started_at)  # read by the run's creation, if still queued
        if result.logged:
            logged = result.logged
            self.write(stage, lambda child: self.tracker.log_recorded(child, logged))
        def end(child: str) -> None:  # on the writer: the stage's drift metrics are compared by then
            metrics = {**result.metrics, **run.stage_metrics.get(stage, {})}
            self.tracker.end_run(child, status.mlflow_status, metrics, None if stage in self.folded else tags,
                                 texts=texts, files=files, end_time=result.ended_at)

        self.write(stage, end)

    def on_run_end(self, run: RunContext, outcome: RunOutcome) -> None:
        from nb2prod.tracking import environment_tags, pip_freeze

        texts = {**outcome.texts, "requirements.txt": pip_freeze()}
        texts.update({f"logs/{n}.log": r.log for n, r in run.results.items() if r.log})
        self.drain()  # every stage run written before the parent ends
        self.require()
        self.tracker.end_run(run.mlflow_run_id, outcome.status.mlflow_status, outcome.metrics,
                             {"nb2prod.status": outcome.status.value, **environment_tags()}, texts=texts)

    def write(self, stage: str, action: Callable[[str], None]) -> None:
        """Queue an MLflow write for the stage's run (``action(child_run_id)``), in order, on the writer."""
        self.writer.submit(lambda: action(self.children[stage].result()))

    def drain(self) -> None:
        """Wait for every queued write."""
        self.writer.shutdown(wait=True)

    def _child(self, run: RunContext, stage: str, tags: dict[str, str], start: float | None = None) -> None:
        def create() -> str:
            self.require()  # never a stage run without its parent
            begun = start
            if stage in self.ended:  # the stage ended meanwhile: created with its final tags
                final, started = self.ended[stage]
                tags.update(final)
                begun = started or start
                self.folded.add(stage)
            child = self.tracker.start_run(run.experiment_id, stage, tags, parent=run.mlflow_run_id,
                                           start_time=begun)
            run.emit(RunEvent(EventKind.STAGE_MLFLOW, stage=stage, mlflow_run_id=child))
            return child

        self.children[stage] = self.writer.submit(create)


class Mlops(RunHooks):
    """Registration, drift and gates (:class:`nb2prod.mlops.hooks.MlopsHooks`) as a hook, on the tracking writer
    where it can: reference profiles load as the first stage starts, drift is compared once a monitoring stage
    ended (in the DAG loop under --fail-on-drift, which waits for the references: its consumers are skipped and
    the run fails), profiles and models are logged on the stage's run, gates and promotion run on the parent's
    metrics at the end."""

    def __init__(self, mlops, tracking: Tracking) -> None:
        self.mlops, self.tracking = mlops, tracking
        self.loaded: Future | None = None  # the reference profiles, loading on the MLflow writer
        self.compared: list[Future] = []  # drift comparisons on the writer

    def on_stage_start(self, run: RunContext, stage: str, payload: Any) -> None:
        if self.loaded is None:  # on the writer, after the parent run's creation
            self.loaded = self.tracking.writer.submit(lambda: self.mlops.start(run.experiment_id, run.mlflow_run_id))

    def on_stage_end(self, run: RunContext, stage: str, result: StageResult) -> None:
        if self.loaded is not None and self.loaded.done():
            self.loaded.result()  # raises what loading the reference profiles raised
        if result.status != StageStatus.DONE.value:
            return
        profiles = result.profiles

        def compare() -> None:
            run.skip.update(self.mlops.stage_done(stage, {"profiles": profiles}))
            run.failure = self.mlops.failure
            run.stage_metrics[stage] = self.mlops.stage_metrics(stage)

        if profiles and self.mlops.req.fail_on_drift:
            self.loaded.result()  # its consumers wait for the verdict
            compare()
        elif profiles:  # on the writer, after the references load and before the stage's run ends
            self.compared.append(self.tracking.writer.submit(compare))
        logged = {"profiles": profiles, "models": result.models}
        result.profiles = result.models = None
        self.tracking.write(stage, lambda child: self.mlops.stage_logged(stage, logged, child, run.mlflow_run_id))

    def on_run_end(self, run: RunContext, outcome: RunOutcome) -> None:
        self.tracking.drain()  # every model registered and every drift compared before the gates decide
        self.tracking.require()
        for future in [self.loaded, *self.compared]:
            if future is not None:
                future.result()
        outcome.metrics.update({k: v for n in run.spec.stages for k, v in run.stage_metrics.get(n, {}).items()})
        metrics = {k: float(v) for k, v in outcome.metrics.items()}  # as the parent run holds them
        outcome.checks.update(self.mlops.finish(run.mlflow_run_id, metrics, outcome.status is RunStatus.DONE))
        outcome.texts["checks.json"] = json.dumps(outcome.checks)  # what a detached run's clients record (detached)


class CacheWrites(RunHooks):
    """Each successful stage's outputs go to the cache: written by the stage's own worker when it runs on the
    coordinator's node (which sees the cache), else through the cache actor, off the critical path; or handed to
    the driver, which writes its own cache (``relay_cache``). The run ends once they are written, so that a
    rerun right after it finds them; then the cache is bounded (least recently used entries go, in a thread)."""

    def __init__(self) -> None:
        self.pending: list[Any] = []  # the cache actor's writes
        self.written = False  # this run put outputs into the coordinator's cache (then bounded at the end)
        self.node: str | None = None

    def on_stage_start(self, run: RunContext, stage: str, payload: Any) -> None:
        req = run.request
        if req.cache_dir and stage in req.keys and not req.relay_cache:
            if self.node is None:
                import ray

                self.node = ray.get_runtime_context().get_node_id()
            payload.cache = {"directory": req.cache_dir, "key": req.keys[stage], "node": self.node}

    def on_stage_end(self, run: RunContext, stage: str, result: StageResult) -> None:
        req = run.request
        if result.status != StageStatus.DONE.value or not req.cache_dir or stage not in req.keys:
            return
        if result.stored:
            self.written = True
            return
        from nb2prod import cache

        entry = cache.entry_meta(stage, req.run_id, result.metrics, result.cells)
        if req.relay_cache:
            run.relay(type="cache", stage=stage, key=req.keys[stage], outputs=run.outputs[stage], entry=entry)
            return
        from nb2prod.runner.tasks import cache_io

        self.pending.append(cache_io().store.remote(req.cache_dir, req.keys[stage], run.outputs[stage], entry))
        self.written = True

    def on_run_end(self, run: RunContext, outcome: RunOutcome) -> None:
        if not self.written:
            return
        if self.pending:
            import ray

            ray.wait(self.pending, num_returns=len(self.pending), timeout=CACHE_WRITE_WAIT_S)
        from nb2prod import cache  # the coordinator sees the cache (else relay_cache): bounded here, in the background

        threading.Thread(target=cache.evict, args=(Path(run.request.cache_dir), cache.max_bytes()),
                         name="cache-evict", daemon=True).start()


class OutputNotebook(RunHooks):
    """The executed notebook (papermill-shaped), from every stage's captured cells; also an MLflow artifact."""

    def on_run_end(self, run: RunContext, outcome: RunOutcome) -> None:
        from nb2prod.runner.outputnb import build_output_notebook

        req, spec = run.request, run.spec
        cells = {i: c for r in run.results.values() for i, c in r.cells.items()}
        nb = build_output_notebook(req.notebook, spec.parameters_cell, req.shown_parameters, cells,
                                   start=_iso(run.started), end=_iso(outcome.ended),
                                   duration=outcome.ended - run.started, failed_error=outcome.error,
                                   input_path=spec.notebook, output_path=req.output_path)
        outcome.output_notebook = json.dumps(nb)
        outcome.texts["output.ipynb"] = outcome.output_notebook


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()
