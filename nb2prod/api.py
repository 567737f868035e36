"""The Python API every front end calls (CLI, REST server, magics, scheduler)."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nb2prod import __version__, secret
from nb2prod.core.builder import build_spec, real_path
from nb2prod.core.params import resolved_parameters
from nb2prod.core.spec import PipelineSpec
from nb2prod.core.status import RunStatus
from nb2prod.errors import Nb2ProdError, RunNotFound, UsageError
from nb2prod.home import run_dir, write_private
from nb2prod.contracts import RunOptions
from nb2prod.runner.launch import Prepared, prepare  # noqa: F401 - prepare is part of the api
from nb2prod.store import runs as store

MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")
CLOSE_WAIT_S = 5.0  # how long a finished run waits for interrupted runs' MLflow runs to be closed


def check(path: str | Path) -> dict[str, Any]:
    """The spec of a notebook as JSON-ready data; ``errors`` lists validation errors."""
    return build_spec(path).to_dict()


def run(path: str | Path, options: RunOptions | None = None, *, run_id: str | None = None, origin: str = "cli",
        observer=None, source: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the pipeline in the foreground; returns the final run record (status inside, never raises
    for a failing stage). Once the run is recorded, any error ends it ``failed`` with the reason. ``source``:
    the notebook's path and git state where the run was submitted (``tracking.source_tags``; a detached run's job
    runs a copy of the directory), else read here."""
    from nb2prod.cache.plan import plan
    from nb2prod.runner.driver import drive, save_outputs

    options = options or RunOptions()
    run_id = run_id or store.new_run_id()
    recorded = _exists(run_id)  # start_run records the run before it launches this process
    try:
        _resolve_references(options)
        prepared = prepare(path, options)
        # whose runs these are: a Ray job runs a copy of the submitter's directory, named by its content
        notebook = (source or {}).get("nb2prod.notebook") or prepared.spec.notebook
        cache_dir, keys, hits = plan(prepared.spec, resolved_parameters(prepared.spec, prepared.overrides), options,
                                     notebook)
    except BaseException as exc:
        if recorded:
            store.finish_run(run_id, RunStatus.FAILED, _error(exc))
        raise
    if not recorded:
        _create(run_id, prepared, options, origin, notebook)
    try:
        store.attach_runner(run_id, os.getpid())  # refused when the run was cancelled or reaped before we began
        store.update_run(run_id, tracking_uri=prepared.tracking_uri)
        store.set_cache_keys(run_id, keys)
        result = drive(_request(run_id, prepared, options, origin, cache_dir, keys, hits, source),
                       options.ray_address, observer)
        save_error = save_outputs(run_id, result, options.output_notebook)
        if "gate" in result:
            store.set_checks(run_id, result["gate"], result.get("promotion"), result.get("drift"))
    except BaseException as exc:
        store.finish_run(run_id, RunStatus.FAILED, _error(exc))
        raise
    status = RunStatus.CANCELLED if result["interrupted"] and result["status"] != "done" else RunStatus(result["status"])
    if save_error and status is RunStatus.DONE:
        status = RunStatus.FAILED
        _mark_mlflow_failed(prepared.tracking_uri, result["mlflow_run_id"], save_error["message"])
    store.finish_run(run_id, status, result["error"] or save_error)  # False: the reaper ended it first
    _close_interrupted()  # here, where MLflow is loaded anyway: processes that only read runs never import it
    return store.get_run(run_id)


def _request(run_id: str, prepared: Prepared, options: RunOptions, origin: str, cache_dir: str,
             keys: dict[str, str], hits: dict[str, dict], source: dict[str, str] | None = None):
    """The :class:`RunRequest` handed to the coordinator."""
    from nb2prod.runner.request import RunRequest
    from nb2prod.runner.shipping import pip_env
    from nb2prod.tracking import is_local, source_tags

    spec = prepared.spec
    tags = {"nb2prod.kind": "pipeline", "nb2prod.run_id": run_id, "nb2prod.notebook_sha256": prepared.sha256,
            "nb2prod.version": __version__, "nb2prod.origin": origin, **(source or source_tags(Path(spec.notebook)))}
    if options.resume_from:
        tags["nb2prod.resumed_from"] = options.resume_from
    shared = _shares_disk(options)  # else the driver asks the cluster what it sees (runner.relay.narrow)
    return RunRequest(
        run_id=run_id, spec=spec, notebook=prepared.notebook, overrides=prepared.overrides,
        shown_parameters=prepared.shown, secret_values=prepared.secret_values, env=prepared.env,
        experiment=prepared.experiment, tracking_uri=prepared.tracking_uri, tags=tags,
        log_output=options.log_output, gpu_fallback=options.gpu_fallback,
        output_path=options.output_notebook,
        cache_dir=cache_dir, keys=keys, hits=hits, runtime_env=pip_env(options.pip, options.requirements),
        ship=_shipment(spec, options), relay_tracking=not shared and is_local(prepared.tracking_uri),
        relay_cache=not shared,
        only=spec.downstream(options.stages) if options.downstream else (options.stages or None),
        gates=list(options.gates), promote=options.promote, drift_reference=options.drift_reference,
        drift_threshold=options.drift_threshold, fail_on_drift=options.fail_on_drift)


def _error(exc: BaseException) -> dict[str, str]:
    message = exc.message if isinstance(exc, Nb2ProdError) else str(exc) or type(exc).__name__
    return {"type": type(exc).__name__, "message": message}


def _mark_mlflow_failed(tracking_uri: str, mlflow_run_id: str | None, reason: str) -> None:
    """The pipeline ran but its outputs could not be saved: its MLflow parent run says so too."""
    if not mlflow_run_id:
        return
    from nb2prod.tracking import Tracker

    try:
        Tracker(tracking_uri).mark_failed(mlflow_run_id, reason)
    except Exception:  # noqa: BLE001 - the run store already holds the reason; MLflow is best effort here
        pass


def _resolve_references(options: RunOptions) -> None:
    """The runs the options name, resolved before anything is recorded: an unknown one is an error now."""
    if options.resume_from:
        try:
            options.resume_from = store.resolve_run_id(options.resume_from)
        except RunNotFound as exc:  # a bad option value, not a missing resource
            raise UsageError(f"--resume: {exc.message}") from None
    options.drift_reference = _drift_reference(options)


def _drift_reference(options: RunOptions) -> str:
    """champion | previous | the MLflow parent run id of an nb2prod run id (the coordinator reads MLflow only)."""
    choice = options.drift_reference
    if choice in ("champion", "previous"):
        return choice
    try:
        record = store.get_run(choice)
    except RunNotFound:  # not an nb2prod run id: taken as an MLflow run id (the coordinator says if there is none)
        if not MLFLOW_RUN_ID.fullmatch(choice):
            raise UsageError(f"--drift-reference {choice}: not champion, previous, a run in the run store nor an "
                             "MLflow run id (32 hexadecimal characters)") from None
        return choice
    if not record.get("mlflow_run_id"):
        raise UsageError(f"--drift-reference {choice}: that run has no MLflow run")
    return record["mlflow_run_id"]


def start_run(path: str | Path, options: RunOptions | None = None, *, origin: str = "server") -> str:
    """Validate, record and launch a run that outlives the caller; return its run id at once.

    With a Jobs API address (``http(s)://``: ``ray_address``, ``RAY_API_SERVER_ADDRESS`` or ``RAY_ADDRESS``) the
    run is a Ray job on that cluster; otherwise a detached local process."""
    from nb2prod.cache.plan import resumed_run
    from nb2prod.runner import jobs

    options = options or RunOptions()
    _resolve_references(options)
    prepared = prepare(path, options)
    if options.resume_from:
        resumed_run(options.resume_from, prepared.spec.notebook)
    address = jobs.detach_address(options.ray_address)
    if jobs.is_jobs_address(address):
        return _submit_job(prepared, options, address, origin)
    run_id = store.new_run_id()
    _create(run_id, prepared, options, origin)
    directory = run_dir(run_id)
    stored = {**options.to_dict(), "parameters": secret.stored_parameters(options.parameters, options.secrets)}
    from nb2prod.runner.spawn import spawn_detached

    try:  # secret values stay out of options.json: the runner gets them in its environment
        write_private(directory / "options.json", json.dumps(stored))
        pid = spawn_detached([sys.executable, "-m", "nb2prod", "run", str(prepared.path), "--run-id", run_id,
                              "--options-file", str(directory / "options.json"), "--origin", origin, "--quiet"],
                             directory / "runner.log", prepared.path.parent,
                             env=secret.runner_environment(options.parameters, options.secrets))
    except OSError as exc:  # else the run would read `running` forever (its pid is ours)
        store.finish_run(run_id, RunStatus.FAILED, _error(exc))
        raise Nb2ProdError(f"could not start the run's process: {exc.strerror or exc}") from None
    store.update_run(run_id, pid=pid)
    return run_id


def get_run(run_id: str) -> dict[str, Any]:
    """The run record for an nb2prod run id or MLflow parent run id (raises RunNotFound); an unfinished
    detached run is refreshed from its Ray job and the tracking server first (and found there when this
    client's run store does not have it)."""
    from nb2prod.errors import RunNotFound
    from nb2prod.runner import detached

    try:
        record = store.get_run(run_id)  # reaps runs whose runner died, once
    except RunNotFound:
        if not detached.adopt(run_id):
            raise
        record = store.get_run(run_id)
    if detached.job_address(record) and record["status"] == RunStatus.RUNNING.value:
        detached.refresh(record)  # the cluster or the tracking server unreachable: an error saying which
        record = store.get_run(record["id"])
    return _shown(record)


def list_runs(notebook: str | Path | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Recent runs, newest first; ``notebook`` filters by notebook path. Detached runs of the configured
    cluster (``RAY_API_SERVER_ADDRESS``) are included, unfinished ones refreshed from their jobs."""
    from nb2prod.errors import Nb2ProdError
    from nb2prod.runner import detached

    try:
        detached.adopt_all()
    except Nb2ProdError:
        pass  # the cluster is unreachable: list what this client knows
    notebook = str(real_path(notebook)) if notebook else None
    records = store.list_runs(notebook, limit)
    stale = [r for r in records if detached.job_address(r) and r["status"] == RunStatus.RUNNING.value]
    for record in stale:
        try:
            detached.refresh(record)
        except Nb2ProdError:
            pass  # shown as last known; `nb2prod status` says why it cannot be refreshed
    if stale:
        records = store.list_runs(notebook, limit)
    return [_shown(r) for r in records]


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "tracking_uri": secret.redact_uri(record.get("tracking_uri"))}


def new_run_id() -> str:
    """A fresh run id (a live view shows the run before :func:`run` records it)."""
    return store.new_run_id()


def stage_outputs(run_id: str, stage: str) -> dict[str, Any]:
    """The outputs a done or cached stage of a run produced, from the cache (``%nb2prod pull``)."""
    from nb2prod.cache import load_stage_outputs

    return load_stage_outputs(run_id, stage)


FETCHED = "fetched"  # in a run's directory: its outputs were fetched from its MLflow run (see stage_log)


def stage_log(run_id: str, stage: str) -> str | None:
    """A finished run's captured output of one stage; None when none was captured. A run that another client of a
    shared run store ran has its outputs in its MLflow run: they are fetched from there, once."""
    record = store.get_run(run_id)
    directory = run_dir(record["id"])
    if _outputs_elsewhere(record, directory):
        from nb2prod.runner.detached import fetch_outputs

        fetch_outputs(record)
        write_private(directory / FETCHED, "")
    path = directory / "logs" / f"{stage}.log"
    return path.read_text(errors="replace") if path.is_file() else None


def _outputs_elsewhere(record: dict[str, Any], directory: Path) -> bool:
    """Whether a finished run's outputs are not in ``directory`` but can be fetched from its MLflow run: another
    client of a shared run store ran it, on a tracking store this client reaches (a server, or files it sees)."""
    from nb2prod.tracking import is_local, sqlite_path

    if any((directory / name).exists() for name in ("result.json", "output.ipynb", FETCHED)):
        return False
    uri = record["tracking_uri"]
    if record["status"] == RunStatus.RUNNING.value or not record["mlflow_run_id"] or not uri:
        return False
    if is_local(uri):  # another machine's local store is not here; opening it would create one
        local = sqlite_path(uri) or Path(uri.removeprefix("file://").removeprefix("file:"))
        return local.exists()
    return True


def cancel_run(run_id: str) -> dict[str, Any]:
    """Ask a running run to stop; its runner cancels the running stages within a heartbeat (a detached run's
    Ray job is stopped: its driver cancels them)."""
    from nb2prod.runner import detached, jobs

    record = get_run(run_id)
    address = detached.job_address(record)
    if address and record["status"] == RunStatus.RUNNING.value:
        jobs.stop(address, record["id"])
        return get_run(record["id"])
    store.request_cancel(record["id"])
    return store.get_run(record["id"])


def _submit_job(prepared: Prepared, options: RunOptions, address: str, origin: str) -> str:
    """A detached run as a Ray job on the cluster at ``address`` (see :mod:`nb2prod.runner.jobs`)."""
    from nb2prod.runner import detached, jobs, shipping
    from nb2prod.tracking import source_tags

    if options.output_notebook or options.log_output:
        raise UsageError("--output-notebook and --log-output need a run in the foreground; a detached run's executed "
                         "notebook is the output.ipynb artifact of its MLflow run, its logs are in `nb2prod logs`")
    jobs.check_tracking_uri(prepared.tracking_uri)
    directory = prepared.path.parent
    shipping.prepare(directory)  # the size limit, before anything is sent
    env = {"working_dir": str(directory), "excludes": shipping.ALWAYS_EXCLUDED + shipping._ignore_patterns(directory)}
    packages = (shipping.pip_env(options.pip, options.requirements) or {}).get("pip", [])
    job_options = {**options.to_dict(), "ray_address": None, "tracking_uri": prepared.tracking_uri,
                   "experiment": prepared.experiment, "pip": packages, "requirements": None}
    run_id = store.new_run_id()
    options = RunOptions.from_dict({**options.to_dict(), "ray_address": address, "experiment": prepared.experiment})
    _create(run_id, prepared, options, origin)
    store.update_run(run_id, pid=None, host=None)  # alive while its job is: never judged by a local pid
    shown = {**_masked(options), "ray_address": None, "tracking_uri": secret.redact_uri(options.tracking_uri)}
    referenced = {var: os.environ[var] for var in secret.references(options.secrets).values() if var}
    try:  # secret and --env values travel in the job's package only
        jobs.submit(address, run_id, prepared.path, job_options, {**prepared.env, **referenced}, env,
                    detached.metadata(prepared, shown), origin, source_tags(prepared.path))
    except BaseException as exc:
        store.finish_run(run_id, RunStatus.FAILED, {"type": type(exc).__name__, "message": str(exc)})
        raise
    return run_id


def _shipment(spec: PipelineSpec, options: RunOptions):
    """The notebook's directory, content-addressed, for an explicitly named cluster (which may not share our
    files); None for the embedded one, which does."""
    from nb2prod.runner.shipping import prepare

    return None if _shares_disk(options) else prepare(Path(spec.notebook).parent)


def _shares_disk(options: RunOptions) -> bool:
    """Whether the run's cluster is known to see this machine's files: nb2prod's embedded cluster is."""
    from nb2prod.runner import cluster

    address = options.ray_address or os.environ.get("RAY_ADDRESS")
    state = cluster.status()
    return not address or bool(state and state["address"] == address)


def _masked(options: RunOptions) -> dict[str, Any]:
    """Options as they may be stored: secret values masked."""
    return {**options.to_dict(), "parameters": secret.stored_parameters(options.parameters, options.secrets)}


def _create(run_id: str, prepared: Prepared, options: RunOptions, origin: str, notebook: str | None = None) -> None:
    masked = _masked(options)
    store.create_run(run_id, notebook or prepared.spec.notebook, dict.fromkeys(prepared.spec.stages),
                     notebook_sha256=prepared.sha256,
                     parameters=prepared.shown, options=masked, origin=origin, resumed_from=options.resume_from)
    store.update_run(run_id, tracking_uri=prepared.tracking_uri)


def _exists(run_id: str) -> bool:
    try:
        store.resolve_run_id(run_id)
        return True
    except Exception:
        return False


def _close_interrupted() -> None:
    """End the MLflow parent runs of interrupted runs as FAILED; called at the end of the next foreground
    run (which has MLflow loaded), never on the read path (``get_run``/``list_runs`` only reap). Waits at most
    CLOSE_WAIT_S: a tracking server that is gone is retried by MLflow for minutes, and the run that calls this
    has finished; a run not closed in time is tried again after the next run."""
    pending = store.reap_interrupted()
    if not pending:
        return
    from nb2prod.tracking import Tracker

    def close(entry: dict[str, Any]) -> None:
        try:
            Tracker(entry["tracking_uri"]).fail_if_running(entry["mlflow_run_id"])
        except Exception:  # noqa: BLE001 - the store may be gone; still never show it running
            pass
        store.update_run(entry["id"], mlflow_closed=True)

    closing = [threading.Thread(target=close, args=(entry,), daemon=True, name="mlflow-close") for entry in pending]
    for thread in closing:
        thread.start()
    deadline = time.monotonic() + CLOSE_WAIT_S
    for thread in closing:
        thread.join(max(0.0, deadline - time.monotonic()))
