"""Start a fire's run — a pipeline run (``nb2prod.api.start_run``) or a plain papermill execution — and
read its status from the run store. Runs are detached processes: a scheduler crash does not stop them."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from typing import Any

from nb2prod.core.builder import real_path
from nb2prod.core.status import RunStatus
from nb2prod.runner.launch import typed_values
from nb2prod.store import runs as store


class Launcher:
    """Launches and watches runs for the scheduler (the hooks a test or another executor may replace)."""

    def launch(self, schedule, parameters: dict[str, Any]) -> tuple[str, str]:
        """Start a run of ``schedule`` with rendered ``parameters``; return (run id, notebook sha256)."""
        values = typed_values(schedule.notebook, parameters)
        if schedule.mode == "notebook":
            return self._notebook(schedule, values)
        from nb2prod import api
        from nb2prod.contracts import RunOptions

        options = RunOptions.from_dict({**schedule.options, "parameters": values})
        run_id = api.start_run(schedule.notebook, options, origin="scheduler")
        return run_id, store.get_run(run_id)["notebook_sha256"]

    def _notebook(self, schedule, values: dict[str, Any]) -> tuple[str, str]:
        from nb2prod.home import run_dir, write_private
        from nb2prod.runner.spawn import spawn_detached

        path = real_path(schedule.notebook)
        content = path.read_bytes()  # the live file, read once: what runs is what the sha256 names
        sha = hashlib.sha256(content).hexdigest()
        run_id = store.new_run_id()
        store.create_run(run_id, str(path), {"notebook": None}, notebook_sha256=sha, parameters=values,
                         options={**schedule.options, "parameters": values, "mode": "notebook"}, origin="scheduler")
        request = {"notebook": str(path), "sha256": sha, "parameters": values, "options": schedule.options}
        try:
            write_private(run_dir(run_id) / "input.ipynb", content)
            write_private(run_dir(run_id) / "request.json", json.dumps(request))
            pid = spawn_detached([sys.executable, "-m", "nb2prod.runner.notebook", run_id],
                                 run_dir(run_id) / "runner.log", path.parent)
        except OSError as exc:  # else the run would read `running` while the scheduler lives (its pid is ours)
            store.finish_run(run_id, RunStatus.FAILED, {"type": type(exc).__name__, "message": str(exc)})
            raise
        store.update_run(run_id, pid=pid)
        return run_id, sha

    def status(self, run_id: str) -> dict[str, Any]:
        """{status, mlflow_run_id, error}; a run whose process died reads ``interrupted``."""
        from nb2prod import api

        record = api.get_run(run_id)
        error = record.get("error") or {}
        return {"status": record["status"], "mlflow_run_id": record["mlflow_run_id"],
                "error": f"{error.get('type', '')}: {error.get('message', '')}" if error else None}

    def cancel(self, run_id: str) -> None:
        """Stop a run (the scheduler's timeout): a cancel request its runner honours within a heartbeat; a
        notebook-mode runner on this host is also sent SIGTERM at once."""
        from nb2prod import api

        record = api.cancel_run(run_id)
        runner = _runner(run_id)
        if (record.get("options") or {}).get("mode") == "notebook" and record["status"] == RunStatus.RUNNING.value \
                and runner:
            try:
                os.killpg(runner, signal.SIGTERM)
            except OSError:
                pass


def _runner(run_id: str) -> int | None:
    """The pid of the run's notebook-mode runner while that pid is still the runner (a pid is reused once its
    process is gone: never signal whatever got it). The runner leads its own session and names the run."""
    import psutil

    pid = store.runner_pid(run_id)
    try:
        if pid and os.getsid(pid) == pid and run_id in psutil.Process(pid).cmdline():
            return pid
    except (OSError, psutil.Error):
        pass
    return None
