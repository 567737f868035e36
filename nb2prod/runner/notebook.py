"""The second executor: a schedule's ``notebook`` mode runs the whole notebook through papermill, with the
same lifecycle hooks (:mod:`nb2prod.runner.hooks`: MLflow tracking, the event stream) and the same MLflow
tracker as the DAG loop. The run has one stage, ``notebook``.

Run as ``python -m nb2prod.runner.notebook RUN_ID`` by the scheduler's launcher (in its own session). The
run directory holds ``request.json`` (notebook, parameters, options) and ``input.ipynb``, the copy of the
notebook whose sha256 the fire records. The process heartbeats the run store, honours ``nb2prod cancel``
and SIGTERM (its process group, kernel included, is stopped; the run ends ``cancelled``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nb2prod import secret
from nb2prod.contracts import EventKind, RunEvent, StageError, StageResult, mask
from nb2prod.core.status import RunStatus, StageStatus
from nb2prod.errors import UsageError
from nb2prod.home import default_tracking_uri, run_dir
from nb2prod.runner.driver import record_event
from nb2prod.runner.hooks import EventStream, RunContext, RunOutcome, Tracking, call
from nb2prod.runner.launch import typed_values
from nb2prod.store import runs as store

HEARTBEAT_S = 5.0
STAGE = "notebook"  # the run's one stage


def main(run_id: str, request: dict[str, Any]) -> int:
    """Execute the notebook of ``request``; the run's status goes to the run store. Returns the exit code."""
    import papermill

    from nb2prod.tracking import Tracker, source_tags

    def stop(*_):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)
    _heartbeat(run_id)
    notebook, source = Path(request["notebook"]), run_dir(run_id) / "input.ipynb"
    options = request.get("options", {})
    output = run_dir(run_id) / "output.ipynb"
    os.close(os.open(output, os.O_WRONLY | os.O_CREAT, 0o600))  # holds secret values until masked below
    secrets = options.get("secrets") or []
    parameters, hidden, refused = dict(request["parameters"]), [], None
    try:  # secrets come from this process's environment at each fire; they are stored nowhere
        parameters.update(typed_values(str(source), secret.from_environment(secrets, parameters)))
        hidden = [str(parameters[n]) for n in secret.names(secrets) if n in parameters and str(parameters[n])]
    except UsageError as exc:
        refused = StageError("UsageError", exc.message)
    tags = {"nb2prod.kind": "notebook", "nb2prod.run_id": run_id, "nb2prod.origin": "scheduler",
            "nb2prod.notebook_sha256": request.get("sha256", ""), **source_tags(notebook)}
    run = RunContext(run_id, notebook.stem, options.get("experiment") or notebook.stem, tags,
                     secret.stored_parameters(parameters, secrets), lambda event: record_event(run_id, event),
                     attempts={STAGE: 1})
    status, error, hooks, tracking = RunStatus.DONE, None, [], None
    try:
        tracker = Tracker(options.get("tracking_uri") or default_tracking_uri())
        store.update_run(run_id, tracking_uri=tracker.uri)
        tracking = Tracking(tracker, stage_runs=False)
        hooks = [tracking, EventStream()]
        call(hooks, "on_run_start", run)
        tracking.require()  # a store that cannot be written fails the run before the notebook runs
        call(hooks, "on_stage_start", run, STAGE, None)
        run.emit(RunEvent(EventKind.RUNNING, stage=STAGE, attempt=1, started_at=time.time()))
        try:
            if refused:
                raise RuntimeError(refused.message)
            kernel = json.loads(source.read_text()).get("metadata", {}).get("kernelspec", {}).get("name", "python3")
            papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name=kernel,
                                       language="python", cwd=str(notebook.parent), progress_bar=False)
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure
            status = RunStatus.FAILED
            error = refused or StageError(type(exc).__name__, mask(str(exc), hidden)[:2000])
        _mask_output(output, hidden)
        status, error = _copy_output(output, options.get("output_notebook"), status, error)
        ended = time.time()
        outcome = RunOutcome(status, ended, error.as_run_error(STAGE) if error else None, {})
        if output.stat().st_size:
            outcome.output_notebook = outcome.texts["output.ipynb"] = output.read_text()
        call(hooks, "on_stage_end", run, STAGE, StageResult(
            StageStatus.DONE.value if status is RunStatus.DONE else StageStatus.FAILED.value, error=error,
            started_at=run.started, ended_at=ended, duration_s=round(ended - run.started, 4)))
        call(hooks, "on_run_end", run, outcome)
    except SystemExit:
        status, error = RunStatus.CANCELLED, StageError("Cancelled", "the run was cancelled")
        _stop_group()
        _mask_output(output, hidden)
        store.update_stage(run_id, STAGE, status=StageStatus.CANCELLED.value, ended_at=store.now())
        if tracking and tracking.started():  # the MLflow run ends KILLED, with what the notebook wrote so far
            call(hooks, "on_run_end", run, RunOutcome(status, time.time(), None, {}))
    except Exception as exc:  # noqa: BLE001 - the tracking store, say: the run ends failed with the reason
        status, error = RunStatus.FAILED, StageError(type(exc).__name__, mask(str(exc), hidden)[:2000])
        _mask_output(output, hidden)
        store.update_stage(run_id, STAGE, status=StageStatus.FAILED.value, ended_at=store.now(),
                           error=error.to_dict())
    store.finish_run(run_id, status, error.as_run_error(STAGE) if error else None)
    return 0 if status is RunStatus.DONE else 1


def _copy_output(output: Path, target: str | None, status: RunStatus,
                 error: StageError | None) -> tuple[RunStatus, StageError | None]:
    """Copy the executed notebook to ``--output-notebook``; a copy that fails fails the run with the reason
    (its own failure first)."""
    if target and output.stat().st_size:
        try:
            shutil.copyfile(output, target)
        except OSError as exc:
            return RunStatus.FAILED, error or StageError(
                "OutputNotebookError", f"the executed notebook could not be written to {target}: "
                                       f"{exc.strerror or exc}; it is kept at {output}")
    return status, error


def _mask_output(output: Path, hidden: list[str]) -> None:
    """Mask the secret values in the executed notebook: papermill's injected cell and metadata, any output."""
    if hidden and output.stat().st_size:
        output.write_text(json.dumps(mask(json.loads(output.read_text()), hidden)))


def _heartbeat(run_id: str) -> None:
    """Keep the run alive in the store (other hosts judge it by this) and turn a cancel request into SIGTERM."""

    def beat() -> None:
        while True:
            try:
                if store.heartbeat(run_id):
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
            except Exception:  # noqa: BLE001 - a busy database: try again next beat
                pass
            threading.Event().wait(HEARTBEAT_S)

    threading.Thread(target=beat, daemon=True, name="nb2prod-heartbeat").start()


def _stop_group() -> None:
    """Stop the kernel and anything else the notebook started (our session's process group), not ourselves."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(os.getpgid(0), signal.SIGTERM)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], json.loads((run_dir(sys.argv[1]) / "request.json").read_text())))
