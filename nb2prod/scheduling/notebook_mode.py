"""A schedule's ``notebook`` mode: the whole notebook through papermill, logged to MLflow.

Run as ``python -m nb2prod.scheduling.notebook_mode RUN_ID JSON`` by the scheduler's launcher.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nb2prod.core.status import RunStatus
from nb2prod.home import default_tracking_uri, run_dir
from nb2prod.store import runs as store


def main(run_id: str, request: dict) -> int:
    import mlflow
    import papermill

    notebook = Path(request["notebook"])
    options = request.get("options", {})
    output = run_dir(run_id) / "output.ipynb"
    mlflow.set_tracking_uri(options.get("tracking_uri") or default_tracking_uri())
    mlflow.set_experiment(options.get("experiment") or notebook.stem)
    status, error = RunStatus.DONE, None
    with mlflow.start_run(run_name=notebook.stem, tags={"nb2prod.kind": "notebook", "nb2prod.run_id": run_id,
                                                        "nb2prod.notebook": str(notebook)}) as run:
        store.update_run(run_id, mlflow_run_id=run.info.run_id, mlflow_experiment_id=run.info.experiment_id,
                         tracking_uri=mlflow.get_tracking_uri())
        mlflow.log_params({k: str(v)[:6000] for k, v in request["parameters"].items()})
        store.update_stage(run_id, "notebook", status="running", started_at=store.now())
        try:
            kernel = json.loads(notebook.read_text()).get("metadata", {}).get("kernelspec", {}).get("name", "python3")
            papermill.execute_notebook(str(notebook), str(output), parameters=request["parameters"],
                                       kernel_name=kernel, language="python", cwd=str(notebook.parent),
                                       progress_bar=False)
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure
            status, error = RunStatus.FAILED, {"type": type(exc).__name__, "message": str(exc)[:2000]}
        if output.exists():
            mlflow.log_artifact(str(output))
        mlflow.set_tag("nb2prod.status", status.value)
        if status is RunStatus.FAILED:
            mlflow.end_run("FAILED")
    store.update_stage(run_id, "notebook", status="done" if status is RunStatus.DONE else "failed",
                       ended_at=store.now(), error=error)
    store.finish_run(run_id, status, error)
    return 0 if status is RunStatus.DONE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], json.loads(sys.argv[2])))
