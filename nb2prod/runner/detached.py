"""A detached run's record on the client, refreshed from its Ray job and its MLflow runs.

A detached run lives on the cluster (its job's driver keeps the cluster's own run store), so any client
configured for the cluster (``RAY_API_SERVER_ADDRESS``) and the tracking server sees it the same way: the job's
status says whether it is alive, the MLflow parent run (tag ``nb2prod.run_id``) and its stage runs say how far it
got. A client mirrors that into its own run store (``refresh``), importing runs it never submitted (``adopt``).
Statuses stay the five: a queued job is ``running`` with stages ``pending``; a job that ended without the run
finishing is ``interrupted``; a stopped job (``nb2prod cancel``) is ``cancelled``.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nb2prod.core.status import RunStatus
from nb2prod.errors import Nb2ProdError, RunNotFound
from nb2prod.runner import jobs
from nb2prod.secret import redact_uri
from nb2prod.store import runs as store

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def job_address(record: dict[str, Any]) -> str | None:
    """The Jobs API address a run was submitted to (None for runs that are not Ray jobs)."""
    address = (record.get("options") or {}).get("ray_address")
    return address if jobs.is_jobs_address(address) else None


def metadata(prepared, options) -> dict[str, str]:
    """The job's metadata: what another client needs to show the run (no secret values)."""
    return {"notebook": str(prepared.path), "experiment": prepared.experiment,
            "tracking_uri": redact_uri(prepared.tracking_uri),
            "stages": json.dumps(list(prepared.spec.stages)), "parameters": json.dumps(prepared.shown, default=str),
            "options": json.dumps(options)}


def refresh(record: dict[str, Any]) -> None:
    """Bring an unfinished detached run's record up to date from its job and the tracking server."""
    address = job_address(record)
    if not address or record["status"] != RunStatus.RUNNING.value:
        return
    job = jobs.info(address, record["id"])
    status = str(job.status.value) if job is not None else None
    try:
        tracker, runs = _mlflow_runs(record)
    except Exception as exc:  # noqa: BLE001 - MLflow's errors (HTTP, auth, database), raised from deep inside
        # the run stays as last known (its stages' states and its outcome are in the tracking server only)
        raise Nb2ProdError(f"cannot read run {record['id']} from its tracking server "
                           f"{redact_uri(record.get('tracking_uri'))}: {_first_line(exc)}") from None
    parent = next((r for r in runs if r.data.tags.get("nb2prod.kind") == "pipeline"), None)
    if parent is not None:
        store.update_run(record["id"], mlflow_run_id=parent.info.run_id, mlflow_experiment_id=parent.info.experiment_id)
    for child in runs:
        name = child.data.tags.get("nb2prod.stage")
        if child.data.tags.get("nb2prod.kind") == "stage" and name in record["stages"]:
            store.update_stage(record["id"], name, **_stage_fields(child))
    if status is None or status in TERMINAL:
        _finish(record, tracker, parent, status, job)


def adopt(run_id: str, address: str | None = None) -> bool:
    """Import a detached run this client did not submit (found by its job); False when there is none."""
    address = address or jobs.detach_address(None)
    if not jobs.is_jobs_address(address) or not run_id.isalnum():
        return False
    job = jobs.info(address, run_id)
    if job is None:
        return False
    _import(run_id, job, address)
    return True


def adopt_all(address: str | None = None) -> None:
    """Import every detached run of the configured cluster that this client's run store lacks."""
    address = address or jobs.detach_address(None)
    if not jobs.is_jobs_address(address):
        return
    for job in jobs.list_runs(address):
        run_id = (job.metadata or {}).get("nb2prod_run_id")
        if run_id:
            try:
                store.resolve_run_id(run_id)
            except RunNotFound:
                _import(run_id, job, address)


def _import(run_id: str, job, address: str) -> None:
    meta = job.metadata or {}
    options = {**json.loads(meta.get("options", "{}")), "ray_address": address, "experiment": meta.get("experiment")}
    store.create_run(run_id, meta.get("notebook", ""), dict.fromkeys(json.loads(meta.get("stages", "[]"))),
                     parameters=json.loads(meta.get("parameters", "{}")), options=options, origin="job")
    from nb2prod.home import default_tracking_uri

    submitted = datetime.fromtimestamp((job.start_time or 0) / 1000, timezone.utc).replace(tzinfo=None)
    ours = default_tracking_uri()  # the job shows its tracking URI without credentials: ours has them
    tracking = ours if redact_uri(ours) == meta.get("tracking_uri") else meta.get("tracking_uri")
    store.update_run(run_id, tracking_uri=tracking, pid=None, host=None, created_at=submitted, started_at=submitted)


def _mlflow_runs(record: dict[str, Any]):
    from nb2prod.tracking import Tracker

    uri = record.get("tracking_uri")
    if not uri:
        return None, []
    tracker = Tracker(uri)
    experiment = (record.get("options") or {}).get("experiment") or Path(record["notebook"]).stem
    return tracker, tracker.runs_of(experiment, record["id"])


def _stage_fields(child) -> dict[str, Any]:
    tags, info = child.data.tags, child.info
    fields: dict[str, Any] = {"mlflow_run_id": info.run_id, "started_at": _dt(info.start_time)}
    if info.status == "RUNNING":
        fields["status"] = "running"
        return fields
    fields.update(status=tags.get("nb2prod.status", "failed"), ended_at=_dt(info.end_time),
                  duration_s=(info.end_time - info.start_time) / 1000 if info.end_time else None,
                  attempts=int(tags.get("nb2prod.attempts", "0") or 0))
    if tags.get("nb2prod.cached") == "true":
        fields.update(status="cached", cached_from=tags.get("nb2prod.cached_from"))
    if tags.get("nb2prod.error"):
        fields["error"] = json.loads(tags["nb2prod.error"])
    return fields


def _finish(record: dict[str, Any], tracker, parent, job_status: str | None, job) -> None:
    """The job ended: the run ends with the status its driver recorded, else cancelled (job stopped) or
    interrupted; its logs and executed notebook come from the tracking server."""
    final = parent.data.tags.get("nb2prod.status") if parent is not None else None
    error = None
    if final not in {s.value for s in RunStatus} or final == RunStatus.RUNNING.value:
        if job_status == "STOPPED":
            final = RunStatus.CANCELLED.value
        else:
            final = RunStatus.INTERRUPTED.value
            error = {"type": "Interrupted", "message": "the run's Ray job ended without finishing the run"
                     + (f": {job.message}" if job is not None and job.message else " (the cluster no longer knows it)")}
    ended = parent.info.end_time if parent is not None and parent.info.status != "RUNNING" else None
    ended = ended or (job.end_time if job is not None else None)  # when it ended there, not when seen here
    if parent is not None:
        if parent.info.status == "RUNNING":
            tracker.fail_if_running(parent.info.run_id)
        download_outputs(tracker, parent.info.run_id, record["id"])
        checks = _checks(tracker, parent.info.run_id)
        if checks:
            store.set_checks(record["id"], checks.get("gate"), checks.get("promotion"), checks.get("drift"))
    store.finish_run(record["id"], RunStatus(final), error, ended_at=_dt(ended))


def fetch_outputs(record: dict[str, Any]) -> None:
    """A finished run's executed notebook and stage logs from its MLflow run, for a client of a shared run store
    that did not run it; an error saying so when the run cannot be read there."""
    from nb2prod.tracking import Tracker

    tracker = Tracker(record["tracking_uri"])
    try:
        tracker.client.get_run(record["mlflow_run_id"])
    except Exception as exc:  # noqa: BLE001 - MLflow's errors (HTTP, auth, database), raised from deep inside
        raise Nb2ProdError(f"run {record['id']}'s outputs are not on this client, and its MLflow run at "
                           f"{redact_uri(record['tracking_uri'])} cannot be read: {_first_line(exc)}") from None
    download_outputs(tracker, record["mlflow_run_id"], record["id"])


def download_outputs(tracker, mlflow_run_id: str, run_id: str) -> None:
    """The executed notebook and stage logs of an MLflow run, where ``nb2prod logs`` and the run dir expect them."""
    from nb2prod.home import run_dir

    directory = run_dir(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("output.ipynb", "logs"):
            try:
                local = Path(tracker.client.download_artifacts(mlflow_run_id, name, tmp))
            except Exception:  # noqa: BLE001 - a run that failed early has no such artifact
                continue
            if local.is_dir():
                (directory / name).mkdir(exist_ok=True)
                for file in local.iterdir():
                    (directory / name / file.name).write_bytes(file.read_bytes())
            else:
                (directory / name).write_bytes(local.read_bytes())


def _checks(tracker, mlflow_run_id: str) -> dict[str, Any] | None:
    """The run's gate, promotion and drift outcome (its ``checks.json``), if its gates, models or monitors made one."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return json.loads(Path(tracker.client.download_artifacts(mlflow_run_id, "checks.json", tmp)).read_text())
        except Exception:  # noqa: BLE001 - a run without gates, models or monitors has none
            return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _dt(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).replace(tzinfo=None) if ms else None
