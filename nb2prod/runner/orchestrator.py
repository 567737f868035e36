"""The DAG loop inside the coordinator: submit ready stages as Ray tasks, retry, time out, cancel.

A stage starts as soon as its upstream stages are done; its inputs travel as Ray object refs
(large numpy arrays zero-copy). ``retries:N`` resubmits a stage that raised, with exponential
backoff; Ray's own ``max_retries`` covers worker/node death only (counted as system retries).
``timeout:S`` counts from the moment the stage starts in its worker; on expiry the worker is killed.
Everything else (MLflow, registration and drift, cache writes, events, the output notebook) is a
lifecycle hook (:mod:`nb2prod.runner.hooks`), called at the start and end of the run and of each stage.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from nb2prod.contracts import SUCCESSFUL, StageError, StageResult
from nb2prod.core.status import RunStatus, StageStatus
from nb2prod.runner.hooks import RunContext, RunHooks, RunOutcome, call
from nb2prod.runner.stage import StagePayload
from nb2prod.runner.tasks import cache_io, run_stage

NODE_CHECK_S = 2.0
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass
class _Task:
    stage: str
    attempt: int
    outputs: Any
    needs: dict[str, float]  # GPUs and custom resources it was placed with (after any GPU fallback)


class Orchestration:
    """One run inside the coordinator: steps the DAG and calls the lifecycle hooks."""

    def __init__(self, request, state, hooks: list[RunHooks], coordinator) -> None:
        self.req, self.state, self.hooks, self.coordinator = request, state, hooks, coordinator
        self.spec = request.spec
        self.status = {name: StageStatus.PENDING for name in self.spec.stages}
        self.run = RunContext.of(request, state.emit, state.relay)
        self.attempts = self.run.attempts
        self.running: dict[Any, _Task] = {}
        self.retry_at: dict[str, float] = {}
        self.nodes_checked = 0.0
        self.cluster_resources = ray.cluster_resources()

    # --- the loop --------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        """Run to the end; return the result the driver receives."""
        call(self.hooks, "on_run_start", self.run)
        self._seed()
        while True:
            if self.state.cancelled or self.state.client_gone():
                self._cancel_all()
                break
            self._submit_ready()
            if not self.running and not any(s is StageStatus.PENDING for s in self.status.values()):
                break
            if self.running:
                ready, _ = ray.wait(list(self.running), num_returns=1, timeout=0.05)
                for ref in ready:
                    self._finished(ref)
                self._check_timeouts()
                self._check_nodes()
            else:
                time.sleep(0.02)
        return self._finish()

    def _seed(self) -> None:
        """Cache hits are ``cached`` at once (their outputs load lazily); stages outside ``only`` are skipped."""
        for name, meta in self.req.hits.items():
            self._end(name, StageResult(StageStatus.CACHED.value, cells=meta.get("cells", {}),
                                        metrics=meta.get("metrics", {}), duration_s=0.0,
                                        cached_from=meta.get("run_id")))
        if self.req.only is not None:
            for name in self.spec.stages:
                if name not in self.req.only and name not in self.req.hits:
                    self._end(name, StageResult(StageStatus.SKIPPED.value))

    def _inputs_of(self, producer: str):
        """The object ref of a producer's outputs, loading a cached stage's outputs on first use."""
        outputs = self.run.outputs
        if producer in self.req.cached:  # put by the driver, from its own cache (relay_cache)
            outputs.setdefault(producer, self.req.cached[producer])
        elif producer not in outputs:
            outputs[producer] = cache_io().load.remote(self.req.cache_dir, self.req.keys[producer])
        return outputs[producer]

    def _submit_ready(self) -> None:
        now = time.time()
        for name, stage in self.spec.stages.items():
            if self.status[name] is not StageStatus.PENDING or name in self._running_stages():
                continue
            ups = [self.status[u] for u in stage.upstream]
            if any(u in (StageStatus.FAILED, StageStatus.SKIPPED, StageStatus.CANCELLED) for u in ups):
                self._end(name, StageResult(StageStatus.SKIPPED.value))
            elif all(u.value in SUCCESSFUL for u in ups) and self.retry_at.get(name, 0) <= now:
                self._submit(name)

    def _running_stages(self) -> set[str]:
        return {t.stage for t in self.running.values()}

    def _submit(self, name: str) -> None:
        stage = self.spec.stages[name]
        self.attempts[name] += 1
        attempt = self.attempts[name]
        options, problem, fallback = self._placement(stage)
        if problem:
            self._end(name, StageResult.failed(StageError("ResourceError", problem, stage.cells[0])))
            return
        if fallback:
            self.run.gpu_fallback.add(name)
        producers = sorted({self._producer(name, i) for i in stage.inputs})
        payload = self._payload(name, attempt, fallback)
        call(self.hooks, "on_stage_start", self.run, name, payload)
        meta_ref, out_ref = run_stage.options(**options).remote(
            payload, self.coordinator, producers, *[self._inputs_of(p) for p in producers])
        needs = {**options.get("resources", {}), **({"GPU": options["num_gpus"]} if options["num_gpus"] else {})}
        self.running[meta_ref] = _Task(name, attempt, out_ref, needs)

    def _placement(self, stage) -> tuple[dict[str, Any], str | None, bool]:
        res = dict(stage.resources)
        options: dict[str, Any] = {"num_cpus": res.pop("cpu", 1), "num_gpus": res.pop("gpu", 0)}
        if "memory" in res:
            options["memory"] = int(res.pop("memory"))
        if res:
            options["resources"] = res
        if self.req.runtime_env:
            options["runtime_env"] = self.req.runtime_env
        fallback = False
        have = self.cluster_resources
        if options["num_gpus"] and have.get("GPU", 0) < options["num_gpus"]:
            if self.req.gpu_fallback != "cpu":
                return options, (f"stage {stage.name!r} asks for {options['num_gpus']:g} GPU(s) but the Ray cluster "
                                 f"has {have.get('GPU', 0):g}; run on a cluster with GPUs, or pass "
                                 "--gpu-fallback cpu to run it on CPU with the NumPy backend"), False
            options["num_gpus"], fallback = 0, True
        for key, amount in (options.get("resources") or {}).items():
            if have.get(key, 0) < amount:
                return options, (f"stage {stage.name!r} asks for resource {key}={amount:g}, which no node of "
                                 "the Ray cluster offers (start a node with --resources)"), False
        if have.get("CPU", 0) < options["num_cpus"]:
            return options, (f"stage {stage.name!r} asks for {options['num_cpus']:g} CPUs; the cluster has "
                             f"{have.get('CPU', 0):g}"), False
        return options, None, fallback

    def _producer(self, stage: str, name: str) -> str:
        upstream = self.spec.stages[stage].upstream
        return [u for u in self.spec.stages if u in upstream and name in self.spec.stages[u].outputs][-1]

    def _payload(self, name: str, attempt: int, gpu_fallback: bool) -> StagePayload:
        spec, stage, req = self.spec, self.spec.stages[name], self.req
        cell = lambda i: (i, spec.cells[i].source)  # noqa: E731
        env = dict(req.env)
        if req.log_output:
            env["NB2PROD_LOG_OUTPUT"] = "1"
        if gpu_fallback:
            env["NB2PROD_DEVICE"] = "cpu"
        return StagePayload(
            run_id=req.run_id, stage=name, attempt=attempt, notebook_dir=str(Path(spec.notebook).parent),
            cells=[cell(i) for i in stage.cells], setup=[cell(i) for i in spec.setup_cells],
            parameters_cell=cell(spec.parameters_cell) if spec.parameters_cell is not None else None,
            parameters=req.overrides, inputs={i: self._producer(name, i) for i in stage.inputs},
            mutated_inputs=stage.mutated_inputs, outputs=stage.outputs, metrics=stage.metrics, env=env,
            keep_all=not any(name in s.upstream for s in spec.stages.values()),
            register=dict(stage.register), monitor=list(stage.monitor),
            secrets=req.secret_values, ship=req.ship.key if req.ship else None)

    # --- results ---------------------------------------------------------------------
    def _finished(self, ref) -> None:
        task = self.running.pop(ref)
        name = task.stage
        try:
            result = StageResult.from_dict(ray.get(ref))
        except ray.exceptions.TaskCancelledError:
            return  # we cancelled it (timeout or cancel) and recorded why
        except ray.exceptions.RayError as exc:
            result = StageResult.failed(_ray_error(exc, name))
        result.system_retries = max(result.system_retries, len(self.state.starts.get((name, task.attempt), [])) - 1)
        if result.status == StageStatus.DONE.value:
            self.run.outputs[name] = task.outputs
            self._end(name, result)
            for later in sorted(self.run.skip):  # a hook forbade them (--fail-on-drift)
                if self.status[later] is StageStatus.PENDING:
                    self._end(later, StageResult(StageStatus.SKIPPED.value))
        else:
            self._failed_attempt(name, result)

    def _failed_attempt(self, name: str, result: StageResult) -> None:
        """Another attempt after an exponential backoff (the same for a failure and a timeout) while
        ``retries:N`` allows; else the stage fails."""
        if self.attempts[name] > self.spec.stages[name].retries:
            self._end(name, result)
            return
        delay = min(BACKOFF_BASE_S * 2 ** (self.attempts[name] - 1), BACKOFF_MAX_S)
        self.retry_at[name] = time.time() + delay
        self.run.results[name] = result
        call(self.hooks, "on_stage_retry", self.run, name, result, delay)

    def _check_timeouts(self) -> None:
        now = time.time()
        for ref, task in list(self.running.items()):
            timeout = self.spec.stages[task.stage].timeout
            starts = self.state.starts.get((task.stage, task.attempt))
            if timeout and starts and now - starts[-1]["t"] > timeout:
                ray.cancel(ref, force=True)
                del self.running[ref]
                error = StageError("TimeoutError", f"stage {task.stage!r} exceeded its timeout of {timeout:g}s; "
                                                   "its worker was killed")
                self._failed_attempt(task.stage, StageResult.failed(
                    error, started_at=starts[-1]["t"], ended_at=now, system_retries=len(starts) - 1))

    def _check_nodes(self) -> None:
        """Fail stages that no live node can run any more (Ray itself would wait forever)."""
        now = time.time()
        if now - self.nodes_checked < NODE_CHECK_S:
            return
        self.nodes_checked = now
        nodes = ray.nodes()
        alive = [n for n in nodes if n["Alive"]]
        for ref, task in list(self.running.items()):
            needed = task.needs
            if not needed or any(all(n["Resources"].get(k, 0) >= v for k, v in needed.items()) for n in alive):
                continue
            starts = self.state.starts.get((task.stage, task.attempt)) or [{}]
            lost = next((n for n in nodes if n["NodeID"] == starts[-1].get("node")), None)
            where = f"node {lost['NodeManagerAddress']} ({lost['NodeID'][:12]})" if lost else "its node"
            ray.cancel(ref, force=True)
            del self.running[ref]
            self._end(task.stage, StageResult.failed(StageError(
                "NodeLostError", f"stage {task.stage!r} lost {where}, and no live node offers "
                                 f"{', '.join(f'{k}={v:g}' for k, v in needed.items())}")))

    def _cancel_all(self) -> None:
        for ref, task in list(self.running.items()):
            ray.cancel(ref, force=True)
            self._end(task.stage, StageResult(StageStatus.CANCELLED.value, ended_at=time.time()))
        self.running.clear()

    def _end(self, name: str, result: StageResult) -> None:
        """A stage's final status: times filled in (a cache hit or skip has none), then the hooks."""
        self.run.results[name] = result
        self.status[name] = StageStatus(result.status)
        if result.status not in (StageStatus.CACHED.value, StageStatus.SKIPPED.value):
            self.state.finished.add(name)
            starts = [s["t"] for key, s_list in self.state.starts.items() if key[0] == name for s in s_list]
            result.started_at = result.started_at or (min(starts) if starts else None)
            result.ended_at = result.ended_at or time.time()
            result.duration_s = round(result.ended_at - result.started_at, 4) if result.started_at else None
        call(self.hooks, "on_stage_end", self.run, name, result)

    def _finish(self) -> dict[str, Any]:
        if self.state.cancelled or self.state.client_gone():
            status = RunStatus.CANCELLED if self.state.cancelled else RunStatus.INTERRUPTED
        elif any(s is StageStatus.FAILED for s in self.status.values()) or self.run.failure:
            status = RunStatus.FAILED
        else:
            status = RunStatus.DONE
        results = self.run.results
        error = next((r.error.as_run_error(n) for n, r in results.items()
                      if self.status[n] is StageStatus.FAILED and r.error), None)
        if error is None and status is RunStatus.FAILED:
            error = self.run.failure
        metrics = {k: v for r in results.values() for k, v in r.metrics.items()}  # hooks add theirs (drift)
        outcome = RunOutcome(status, time.time(), error, metrics,
                             {"pipeline.json": json.dumps(self.spec.to_dict(include_code=True), indent=1)})
        call(self.hooks, "on_run_end", self.run, outcome)
        return {"status": status.value, "mlflow_run_id": self.run.mlflow_run_id,
                "experiment_id": self.run.experiment_id, "duration_s": round(outcome.ended - self.run.started, 4),
                "error": error, "output_notebook": outcome.output_notebook,
                "stages": {n: {"status": self.status[n].value, "attempts": self.attempts[n],
                               "log": results[n].log if n in results else ""} for n in self.spec.stages},
                "metrics": metrics, **outcome.checks}


def _ray_error(exc: Exception, stage: str) -> StageError:
    kind = type(exc).__name__
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        message = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).splitlines()[0]
        if "serializ" in str(exc).lower() or "pickle" in str(exc).lower():
            message = f"an output of stage {stage!r} could not be serialized: {message}"
    else:
        message = f"stage {stage!r} lost its worker ({kind}): {str(exc).splitlines()[0] if str(exc) else kind}"
    return StageError(kind, message)
