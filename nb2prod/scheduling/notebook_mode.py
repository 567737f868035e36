"""A schedule's ``notebook`` mode: the whole notebook through papermill, logged to MLflow.

Run as ``python -m nb2prod.scheduling.notebook_mode RUN_ID`` by the scheduler's launcher (in its own
session). The run directory holds ``request.json`` (notebook, parameters, options) and ``input.ipynb``, the
copy of the notebook whose sha256 the fire records. The process heartbeats the run store, honours
``nb2prod cancel`` and SIGTERM (its process group, kernel included, is stopped; the run ends ``cancelled``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from nb2prod import secret
from nb2prod.contracts import mask
from nb2prod.core.status import RunStatus
from nb2prod.errors import UsageError
from nb2prod.home import default_tracking_uri, run_dir
from nb2prod.scheduling.launch import typed_values
from nb2prod.store import runs as store

HEARTBEAT_S = 5.0


def main(run_id: str, request: dict) -> int:
    import mlflow
    import papermill

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
        refused = {"type": "UsageError", "message": exc.message}
    status, error = RunStatus.DONE, None
    try:
        mlflow.set_tracking_uri(options.get("tracking_uri") or default_tracking_uri())
        mlflow.set_experiment(options.get("experiment") or notebook.stem)
        with mlflow.start_run(run_name=notebook.stem, tags={
                "nb2prod.kind": "notebook", "nb2prod.run_id": run_id, "nb2prod.notebook": str(notebook),
                "nb2prod.origin": "scheduler", "nb2prod.notebook_sha256": request.get("sha256", "")}) as run:
            store.update_run(run_id, mlflow_run_id=run.info.run_id, mlflow_experiment_id=run.info.experiment_id,
                             tracking_uri=mlflow.get_tracking_uri())
            mlflow.log_params({k: str(v)[:6000] for k, v in secret.stored_parameters(parameters, secrets).items()})
            store.update_stage(run_id, "notebook", status="running", started_at=store.now())
            try:
                if refused:
                    raise RuntimeError(refused["message"])
                kernel = json.loads(source.read_text()).get("metadata", {}).get("kernelspec", {}).get("name",
                                                                                                   "python3")
                papermill.execute_notebook(str(source), str(output), parameters=parameters,
                                           kernel_name=kernel, language="python", cwd=str(notebook.parent),
                                           progress_bar=False)
            except Exception as exc:  # noqa: BLE001 - recorded as the run's failure
                status = RunStatus.FAILED
                error = refused or {"type": type(exc).__name__, "message": mask(str(exc), hidden)[:2000]}
            _mask_output(output, hidden)
            if output.stat().st_size:
                mlflow.log_artifact(str(output))
                if options.get("output_notebook"):
                    try:
                        shutil.copyfile(output, options["output_notebook"])
                    except OSError as exc:  # the run ends failed with the reason (its own failure first)
                        status, error = RunStatus.FAILED, error or {
                            "type": "OutputNotebookError", "message": f"the executed notebook could not be written "
                            f"to {options['output_notebook']}: {exc.strerror or exc}; it is kept at {output}"}
            mlflow.set_tag("nb2prod.status", status.value)
            if status is RunStatus.FAILED:
                mlflow.end_run("FAILED")
    except SystemExit:
        status, error = RunStatus.CANCELLED, {"type": "Cancelled", "message": "the run was cancelled"}
        _stop_group()
        _mask_output(output, hidden)
    except Exception as exc:  # noqa: BLE001 - the tracking store, say: the run ends failed with the reason
        status, error = RunStatus.FAILED, {"type": type(exc).__name__, "message": mask(str(exc), hidden)[:2000]}
        _mask_output(output, hidden)
    store.update_stage(run_id, "notebook", status={RunStatus.DONE: "done", RunStatus.FAILED: "failed"}.get(
        status, "cancelled"), ended_at=store.now(), error=error)
    store.finish_run(run_id, status, error)
    return 0 if status is RunStatus.DONE else 1


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
