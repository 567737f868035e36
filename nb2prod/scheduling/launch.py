"""Start a fire's run — a pipeline run (``nb2prod.api.start_run``) or a plain papermill execution — and
read its status from the run store. Runs are detached processes: a scheduler crash does not stop them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from nb2prod.core.params import infer_value
from nb2prod.core.status import RunStatus
from nb2prod.store import runs as store


class Launcher:
    """Launches and watches runs for the scheduler."""

    def launch(self, schedule, parameters: dict[str, Any]) -> tuple[str, str]:
        """Start a run of ``schedule`` with rendered ``parameters``; return (run id, notebook sha256)."""
        values = {k: infer_value(v) if isinstance(v, str) else v for k, v in parameters.items()}
        if schedule.mode == "notebook":
            return self._notebook(schedule, values)
        from nb2prod import api
        from nb2prod.runner.options import RunOptions

        options = RunOptions.from_dict({**schedule.options, "parameters": values})
        run_id = api.start_run(schedule.notebook, options, origin="scheduler")
        return run_id, store.get_run(run_id)["notebook_sha256"]

    def _notebook(self, schedule, values: dict[str, Any]) -> tuple[str, str]:
        from nb2prod.home import run_dir

        path = Path(schedule.notebook)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        run_id = store.new_run_id()
        store.create_run(run_id, str(path.resolve()), {"notebook": None}, notebook_sha256=sha, parameters=values,
                         options={**schedule.options, "parameters": values, "mode": "notebook"}, origin="scheduler")
        directory = run_dir(run_id)
        with open(directory / "runner.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "nb2prod.scheduling.notebook_mode", run_id,
                                     json.dumps({"notebook": str(path.resolve()), "parameters": values,
                                                 "options": schedule.options})],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=str(path.parent))
        store.update_run(run_id, pid=proc.pid)
        return run_id, sha

    def status(self, run_id: str) -> dict[str, Any]:
        record = store.get_run(run_id)
        error = record.get("error") or {}
        return {"status": record["status"], "mlflow_run_id": record["mlflow_run_id"],
                "error": f"{error.get('type', '')}: {error.get('message', '')}" if error else None}

    def cancel(self, run_id: str) -> None:
        record = store.get_run(run_id)
        if record["options"].get("mode") == "notebook":
            import os
            import signal

            run = store.get_run(run_id)
            if run["status"] == RunStatus.RUNNING.value:
                try:
                    os.killpg(os.getpgid(_pid(run_id)), signal.SIGTERM)
                except (ProcessLookupError, TypeError):
                    pass
            store.finish_run(run_id, RunStatus.CANCELLED, {"type": "Timeout", "message": "cancelled by the scheduler"})
        else:
            from nb2prod import api

            api.cancel_run(run_id)


def _pid(run_id: str) -> int | None:
    from nb2prod.store.db import session
    from nb2prod.store.models import RunRow

    with session() as s:
        return s.get(RunRow, run_id).pid
