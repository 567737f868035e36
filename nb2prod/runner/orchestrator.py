"""The DAG loop inside the coordinator: submit ready stages as Ray tasks, retry, time out, cancel.

A stage starts as soon as its upstream stages are done; its inputs travel as Ray object refs
(large numpy arrays zero-copy). ``retries:N`` resubmits a stage that raised, with exponential
backoff; Ray's own ``max_retries`` covers worker/node death only (counted as system retries).
``timeout:S`` counts from the moment the stage starts in its worker; on expiry the worker is killed.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray

from nb2prod.core.status import RunStatus, StageStatus
from nb2prod.runner.outputnb import build_output_notebook
from nb2prod.runner.stage import StagePayload
from nb2prod.runner.tasks import load_cached, run_stage, store_outputs

CACHE_WRITE_WAIT_S = 120.0
NODE_CHECK_S = 2.0
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass
class _Task:
    stage: str
    attempt: int
    outputs: Any
    submitted: float
    needs: dict[str, float]  # GPUs and custom resources it was placed with (after any GPU fallback)


class Orchestration:
    """One run inside the coordinator."""

    def __init__(self, request, state, tracker, coordinator) -> None:
        self.req, self.state, self.tracker, self.coordinator = request, state, tracker, coordinator
        self.spec = request.spec
        self.status = {name: StageStatus.PENDING for name in self.spec.stages}
        self.attempts = {name: 0 for name in self.spec.stages}
        self.results: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, Any] = {}
        self.running: dict[Any, _Task] = {}
        self.retry_at: dict[str, float] = {}
        self.child_runs: dict[str, Future] = {}
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")  # one ordered writer
        self.cache_writes: list[Any] = []
        self.nodes_checked = 0.0
        self.cluster_resources = ray.cluster_resources()
        self.mlops = None  # MlopsHooks when the notebook registers, monitors or has gates

    # --- the loop --------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = time.time()
        req = self.req
        self.experiment_id = self.tracker.experiment_id(req.experiment)
        self.parent = self.tracker.start_run(self.experiment_id, Path(self.spec.notebook).stem, req.tags,
                                             params=req.shown_parameters)
        self.state.emit(type="run", mlflow_run_id=self.parent, experiment_id=self.experiment_id)
        from nb2prod.mlops import hooks

        if hooks.enabled(self.spec, req):
            self.mlops = hooks.MlopsHooks(req, self.tracker.client)
            self.mlops.start(self.experiment_id, self.parent)
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
        return self._finish(started)

    def _seed(self) -> None:
        """Cache hits are ``cached`` at once (their outputs load lazily); stages outside ``only`` are skipped."""
        for name, meta in self.req.hits.items():
            self.results[name] = {"cells": meta.get("cells", {}), "metrics": meta.get("metrics", {}), "log": "",
                                  "error": None, "cached_from": meta.get("run_id")}
            self.status[name] = StageStatus.CACHED
            tags = {"nb2prod.kind": "stage", "nb2prod.stage": name, "nb2prod.run_id": self.req.run_id,
                    "nb2prod.cached": "true", "nb2prod.cached_from": str(meta.get("run_id"))}
            self._child_run(name, tags)
            self._write(name, lambda child, m=meta: self.tracker.end_run(
                child, "FINISHED", {**m.get("metrics", {}), "nb2prod.duration_s": 0.0}))
            self.state.emit(type="stage", stage=name, status="cached", attempt=0, duration_s=0.0,
                            cached_from=meta.get("run_id"))
        if self.req.only is not None:
            for name in self.spec.stages:
                if name not in self.req.only and name not in self.req.hits:
                    self._set(name, StageStatus.SKIPPED)

    def _inputs_of(self, producer: str):
        """The object ref of a producer's outputs, loading a cached stage's outputs on first use."""
        if producer in self.req.cached:  # put by the driver, from its own cache (relay_cache)
            self.outputs.setdefault(producer, self.req.cached[producer])
        elif producer not in self.outputs:
            self.outputs[producer] = load_cached.remote(self.req.cache_dir, self.req.keys[producer])
        return self.outputs[producer]

    def _submit_ready(self) -> None:
        now = time.time()
        done = (StageStatus.DONE, StageStatus.CACHED)
        for name, stage in self.spec.stages.items():
            if self.status[name] is not StageStatus.PENDING or name in self._running_stages():
                continue
            ups = [self.status[u] for u in stage.upstream]
            if any(u in (StageStatus.FAILED, StageStatus.SKIPPED, StageStatus.CANCELLED) for u in ups):
                self._set(name, StageStatus.SKIPPED)
            elif all(u in done for u in ups) and self.retry_at.get(name, 0) <= now:
                self._submit(name)

    def _running_stages(self) -> set[str]:
        return {t.stage for t in self.running.values()}

    def _submit(self, name: str) -> None:
        stage = self.spec.stages[name]
        self.attempts[name] += 1
        attempt = self.attempts[name]
        options, problem, fallback = self._placement(stage)
        if problem:
            self._fail(name, {"type": "ResourceError", "message": problem, "cell_index": stage.cells[0],
                              "line": None, "traceback": ""})
            return
        if name not in self.child_runs:
            tags = {"nb2prod.kind": "stage", "nb2prod.stage": name, "nb2prod.run_id": self.req.run_id}
            if fallback:
                tags["nb2prod.gpu_fallback"] = "true"
            self._child_run(name, tags)
        producers = sorted({self._producer(name, i) for i in stage.inputs})
        payload = self._payload(name, attempt, fallback)
        meta_ref, out_ref = run_stage.options(**options).remote(
            payload, self.coordinator, producers, *[self._inputs_of(p) for p in producers])
        needs = {**options.get("resources", {}), **({"GPU": options["num_gpus"]} if options["num_gpus"] else {})}
        self.running[meta_ref] = _Task(name, attempt, out_ref, time.time(), needs)
        self.state.emit(type="stage", stage=name, status="queued", attempt=attempt, gpu_fallback=fallback)

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
        uses_mlflow = any("mlflow" in spec.cells[i].source for i in [*stage.cells, *spec.setup_cells])
        return StagePayload(
            run_id=req.run_id, stage=name, attempt=attempt, notebook_dir=str(Path(spec.notebook).parent),
            cells=[cell(i) for i in stage.cells], setup=[cell(i) for i in spec.setup_cells],
            parameters_cell=cell(spec.parameters_cell) if spec.parameters_cell is not None else None,
            parameters=req.overrides, inputs={i: self._producer(name, i) for i in stage.inputs},
            mutated_inputs=stage.mutated_inputs, outputs=stage.outputs, metrics=stage.metrics, env=env,
            keep_all=not any(name in s.upstream for s in spec.stages.values()),
            register=dict(stage.register), monitor=list(stage.monitor),
            secrets=req.secret_values,
            mlflow={"tracking_uri": self.tracker.uri, "run_id": self.child_runs[name].result()}
            if uses_mlflow and not self.tracker.relayed else None,
            ship=req.ship.key if req.ship else None)

    # --- results ---------------------------------------------------------------------
    def _finished(self, ref) -> None:
        task = self.running.pop(ref)
        name = task.stage
        try:
            meta = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return  # we cancelled it (timeout or cancel) and recorded why
        except ray.exceptions.RayError as exc:
            meta = {"status": "failed", "cells": {}, "metrics": {}, "log": "", "error": _ray_error(exc, name)}
        meta["system_retries"] = max(meta.get("system_retries", 0),
                                     len(self.state.starts.get((name, task.attempt), [])) - 1)
        if meta["status"] == "done":
            self.outputs[name] = task.outputs
            skip = self.mlops.stage_done(name, meta) if self.mlops else []
            self._record(name, meta, StageStatus.DONE)
            self._store(name, task.outputs, meta)
            for later in skip:
                if self.status[later] is StageStatus.PENDING:
                    self._set(later, StageStatus.SKIPPED)
        elif self.attempts[name] <= self.spec.stages[name].retries:
            self._retry(name, task.attempt, meta)
        else:
            self._record(name, meta, StageStatus.FAILED)

    def _retry(self, name: str, attempt: int, meta: dict[str, Any]) -> None:
        """Another attempt after an exponential backoff (the same for a failure and a timeout)."""
        delay = min(BACKOFF_BASE_S * 2 ** (self.attempts[name] - 1), BACKOFF_MAX_S)
        self.retry_at[name] = time.time() + delay
        self.state.emit(type="stage", stage=name, status="retrying", attempt=attempt, error=meta["error"],
                        retry_in_s=delay)
        self.results[name] = meta

    def _store(self, name: str, outputs, meta: dict[str, Any]) -> None:
        """Write a successful stage's outputs to the cache in the background (off the critical path)."""
        if self.req.cache_dir and name in self.req.keys:
            entry = {"stage": name, "run_id": self.req.run_id, "metrics": meta.get("metrics", {}),
                     "cells": meta.get("cells", {})}
            if self.req.relay_cache:  # the driver writes its own cache
                self.state.emit(type="cache", stage=name, key=self.req.keys[name], outputs=outputs, entry=entry)
                return
            self.cache_writes.append(store_outputs.remote(self.req.cache_dir, self.req.keys[name], outputs, entry))

    def _check_timeouts(self) -> None:
        now = time.time()
        for ref, task in list(self.running.items()):
            timeout = self.spec.stages[task.stage].timeout
            starts = self.state.starts.get((task.stage, task.attempt))
            if timeout and starts and now - starts[-1]["t"] > timeout:
                ray.cancel(ref, force=True)
                del self.running[ref]
                error = {"type": "TimeoutError", "cell_index": None, "line": None, "traceback": "",
                         "message": f"stage {task.stage!r} exceeded its timeout of {timeout:g}s; its worker was killed"}
                meta = {"status": "failed", "cells": {}, "metrics": {}, "log": "", "error": error,
                        "started_at": starts[-1]["t"], "ended_at": now, "system_retries": len(starts) - 1}
                if self.attempts[task.stage] <= self.spec.stages[task.stage].retries:
                    self._retry(task.stage, task.attempt, meta)
                else:
                    self._record(task.stage, meta, StageStatus.FAILED)

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
            self._fail(task.stage, {"type": "NodeLostError", "cell_index": None, "line": None, "traceback": "",
                                    "message": f"stage {task.stage!r} lost {where}, and no live node offers "
                                               f"{', '.join(f'{k}={v:g}' for k, v in needed.items())}"})

    def _cancel_all(self) -> None:
        for ref, task in list(self.running.items()):
            ray.cancel(ref, force=True)
            self._record(task.stage, {"status": "cancelled", "cells": {}, "metrics": {}, "log": "", "error": None,
                                      "ended_at": time.time()}, StageStatus.CANCELLED)
        self.running.clear()

    def _fail(self, name: str, error: dict[str, Any]) -> None:
        self._record(name, {"status": "failed", "cells": {}, "metrics": {}, "log": "", "error": error}, StageStatus.FAILED)

    def _record(self, name: str, meta: dict[str, Any], status: StageStatus) -> None:
        self.results[name] = meta
        self.state.finished.add(name)
        self.status[name] = status
        starts = [s["t"] for key, s_list in self.state.starts.items() if key[0] == name for s in s_list]
        started = meta.get("started_at") or (min(starts) if starts else None)
        ended = meta.get("ended_at") or time.time()
        duration = round(ended - started, 4) if started else None
        if name in self.child_runs:
            drift = self.mlops.stage_metrics(name) if self.mlops else {}
            metrics = {**meta.get("metrics", {}), **drift, "nb2prod.duration_s": duration or 0.0}
            tags = {"nb2prod.status": status.value, "nb2prod.attempts": str(self.attempts[name])}
            if meta.get("error"):
                tags["nb2prod.error"] = json.dumps({k: meta["error"].get(k) for k in ("type", "message", "cell_index",
                                                                                        "line")})
            texts = {f"logs/{name}.log": meta["log"]} if meta.get("log") else None
            files = meta.get("files") or None

            def end(child: str) -> None:
                if self.mlops and status is StageStatus.DONE:
                    self.mlops.stage_logged(name, meta, child, self.parent)
                self.tracker.end_run(child, status.mlflow_status, metrics, tags, texts=texts, files=files)

            self._write(name, end)
        self.state.emit(type="stage", stage=name, status=status.value, attempt=self.attempts[name],
                        started_at=started, ended_at=ended, duration_s=duration, error=meta.get("error"),
                        system_retries=meta.get("system_retries", 0))

    def _child_run(self, name: str, tags: dict[str, str]) -> None:
        """Create the stage's MLflow run on the writer thread (off the DAG loop's critical path)."""
        def create() -> str:
            child = self.tracker.start_run(self.experiment_id, name, tags, parent=self.parent)
            self.state.emit(type="stage_mlflow", stage=name, mlflow_run_id=child)
            return child

        self.child_runs[name] = self.writer.submit(create)

    def _write(self, name: str, action) -> None:
        """Queue an MLflow write for the stage's run, in order, on the writer thread."""
        self.writer.submit(lambda: action(self.child_runs[name].result()))

    def _set(self, name: str, status: StageStatus) -> None:
        self.status[name] = status
        self.state.emit(type="stage", stage=name, status=status.value, attempt=0)

    def _finish(self, started: float) -> dict[str, Any]:
        if self.state.cancelled or self.state.client_gone():
            status = RunStatus.CANCELLED if self.state.cancelled else RunStatus.INTERRUPTED
        elif any(s is StageStatus.FAILED for s in self.status.values()) or (self.mlops and self.mlops.failure):
            status = RunStatus.FAILED
        else:
            status = RunStatus.DONE
        ended = time.time()
        error = next(({"stage": n, **r["error"]} for n, r in self.results.items()
                      if self.status[n] is StageStatus.FAILED and r.get("error")), None)
        if error is None and status is RunStatus.FAILED and self.mlops:
            error = self.mlops.failure
        cells = {i: c for r in self.results.values() for i, c in r.get("cells", {}).items()}
        nb = build_output_notebook(self.req.notebook, self.spec.parameters_cell, self.req.shown_parameters, cells,
                                   start=_iso(started), end=_iso(ended), duration=ended - started,
                                   failed_error=error, input_path=self.spec.notebook, output_path=self.req.output_path)
        nb_json = json.dumps(nb)
        metrics = {k: v for r in self.results.values() for k, v in r.get("metrics", {}).items()}
        if self.mlops:
            metrics.update({k: v for n in self.spec.stages for k, v in self.mlops.stage_metrics(n).items()})
        from nb2prod.tracking import environment_tags, pip_freeze

        texts = {"pipeline.json": json.dumps(self.spec.to_dict(include_code=True), indent=1),
                 "output.ipynb": nb_json, "requirements.txt": pip_freeze()}
        texts.update({f"logs/{n}.log": r["log"] for n, r in self.results.items() if r.get("log")})
        self.writer.shutdown(wait=True)  # every stage run written before the parent ends
        self.tracker.end_run(self.parent, status.mlflow_status, metrics,
                             {"nb2prod.status": status.value, **environment_tags()}, texts=texts)
        checks = self.mlops.finish(self.parent, status is RunStatus.DONE) if self.mlops else {}
        if self.cache_writes:  # so that a rerun right after this one finds them
            ray.wait(self.cache_writes, num_returns=len(self.cache_writes), timeout=CACHE_WRITE_WAIT_S)
        self.state.emit(type="end", status=status.value)
        return {"status": status.value, "mlflow_run_id": self.parent, "experiment_id": self.experiment_id,
                "duration_s": round(ended - started, 4), "error": error, "output_notebook": nb_json,
                "stages": {n: {"status": self.status[n].value, "attempts": self.attempts[n],
                               "log": self.results.get(n, {}).get("log", "")} for n in self.spec.stages},
                "metrics": metrics, **checks}


def _ray_error(exc: Exception, stage: str) -> dict[str, Any]:
    kind = type(exc).__name__
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        message = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).splitlines()[0]
        if "serializ" in str(exc).lower() or "pickle" in str(exc).lower():
            message = f"an output of stage {stage!r} could not be serialized: {message}"
    else:
        message = f"stage {stage!r} lost its worker ({kind}): {str(exc).splitlines()[0] if str(exc) else kind}"
    return {"type": kind, "message": message, "cell_index": None, "line": None, "traceback": ""}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()
