"""MLflow behind one small module: experiments, parent and stage runs, batch writes.

Used by the coordinator actor (the single writer of a run's MLflow records), so a fresh
``nb2prod run`` process never imports mlflow nor opens the store itself.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

PARAM_LIMIT = 6000


def is_local(uri: str) -> bool:
    """Whether a tracking URI names a store on this machine's disk (SQLite, file store, bare path), which a
    cluster on other machines cannot reach (servers and databases it can)."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def sqlite_path(uri: str) -> Path | None:
    """The database file a ``sqlite:///PATH`` tracking URI names (as written: relative or absolute); else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def stage_store(store_uri: str | None = None, artifact_uri: str | None = None):
    """MLflow's store for ``nb2prod-stage:`` URIs (entry point ``mlflow.tracking_store``): see
    :mod:`nb2prod.tracking.stagestore`, imported here, once MLflow itself is."""
    from nb2prod.tracking.stagestore import StageStore

    return StageStore(store_uri, artifact_uri)


_IMPORTING = threading.Lock()


def preload(tracking_uri: str | None = None) -> None:
    """Import MLflow's client and SQL store, and open ``tracking_uri`` (a new store's schema is created): ~2.5 s
    of CPU, and seconds more for a new store, that a new coordinator spends here, in a thread of its own, rather
    than inside its first run. A :class:`Tracker`'s first use waits for it."""
    with _IMPORTING:
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        from mlflow import MlflowClient  # noqa: F401

        if tracking_uri:
            Tracker(tracking_uri)._connect().search_experiments(max_results=1)


_WAL_DATABASES: set[str] = set()
_WAL_LOCK = threading.Lock()


def _commit_without_fsync(database: Path) -> None:
    """Open the SQLite tracking store in WAL mode with ``synchronous=NORMAL``, as the run store is: a commit then
    appends to the log without an fsync (~3 ms each here; a stage's MLflow run takes three commits, the store's
    creation some fifty). Safe against crashes of any process; a power cut may lose the last commits, never the
    database. Only connections to ``database`` are touched (SQLAlchemy's ``connect`` event on every engine)."""
    with _WAL_LOCK:
        first = not _WAL_DATABASES
        _WAL_DATABASES.add(os.path.realpath(database))
    if not first:
        return
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(connection, _record) -> None:
        if isinstance(connection, sqlite3.Connection):
            path = connection.execute("PRAGMA database_list").fetchone()[2]
            if path and os.path.realpath(path) in _WAL_DATABASES:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")


class Tracker:
    """Writes nb2prod runs to one MLflow tracking store."""

    relayed = False  # see nb2prod.runner.relay.RelayTracker

    def __init__(self, tracking_uri: str) -> None:
        if tracking_uri.startswith("file:") or "://" not in tracking_uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        # nb2prod's own artifact transfers (a detached run's logs and notebook for `status`) draw no progress bars
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.uri = tracking_uri
        self._experiments: dict[str, str] = {}
        self._lock = threading.Lock()  # the coordinator's runs share this tracker

    @functools.cached_property
    def client(self):
        """MLflow's client of this store; mlflow is imported on first use (after :func:`preload`, if running)."""
        with _IMPORTING:
            pass
        return self._connect()

    def _connect(self):
        """A new MLflow client of this store (every method takes :attr:`client` before importing anything of
        mlflow: in a coordinator, importing it in two threads at once can leave half-initialized modules)."""
        from mlflow import MlflowClient

        database = sqlite_path(self.uri)
        if database is not None:
            _commit_without_fsync(database)
        return MlflowClient(self.uri)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if missing (artifacts beside a SQLite store, never in the cwd).
        Concurrent first runs of one experiment (here or in another process) all get the one experiment."""
        with self._lock:
            if name not in self._experiments:
                self._experiments[name] = self._get_or_create(name)
            return self._experiments[name]

    def _get_or_create(self, name: str) -> str:
        client = self.client  # first: mlflow is imported only once preload() is done with it
        from mlflow.exceptions import MlflowException

        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=self._artifact_root(name))
        except MlflowException as exc:  # another process created it first
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return client.get_experiment_by_name(name).experiment_id

    def _artifact_root(self, name: str) -> str | None:
        db = sqlite_path(self.uri)
        if db is None:
            return None  # servers and file stores have their own artifact roots
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return (db.parent / "mlartifacts" / f"{safe}-{uuid.uuid4().hex[:8]}").as_uri()

    def start_run(self, experiment_id: str, name: str, tags: dict[str, str],
                  params: dict[str, Any] | None = None, parent: str | None = None,
                  start_time: float | None = None) -> str:
        """Create a run (a stage run when ``parent`` is given) with its tags and params in one batch; it started
        at ``start_time`` (seconds since the epoch), else now."""
        client = self.client
        from mlflow.entities import Param

        if parent:
            tags = {**tags, "mlflow.parentRunId": parent}
        run = client.create_run(experiment_id, run_name=name, tags=tags, start_time=_ms(start_time))
        if params:
            client.log_batch(run.info.run_id, params=[Param(k, _text(v)) for k, v in params.items()])
        return run.info.run_id

    def end_run(self, run_id: str, status: str, metrics: dict[str, float] | None = None,
                tags: dict[str, str] | None = None, texts: dict[str, str] | None = None,
                files: dict[str, bytes] | None = None, end_time: float | None = None) -> None:
        """Log metrics/tags in one batch (none when there are none), then text and binary artifacts, then
        terminate the run; it ended at ``end_time`` (seconds since the epoch), else now."""
        client = self.client
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        if metrics or tags:
            client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                             tags=[RunTag(k, _text(v)) for k, v in (tags or {}).items()])
        for path, text in (texts or {}).items():
            client.log_text(run_id, text, path)
        if files:
            with tempfile.TemporaryDirectory() as tmp:
                for rel, data in files.items():
                    local = os.path.join(tmp, rel)
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    with open(local, "wb") as f:
                        f.write(data)
                client.log_artifacts(run_id, tmp)
        client.set_terminated(run_id, status, end_time=_ms(end_time))

    def log_recorded(self, run_id: str, logged: dict[str, Any]) -> None:
        """Write what stage code logged on a store it could not reach (:func:`nb2prod.tracking.stagestore.take`):
        metrics with their steps and timestamps, params and tags, in batches of MLflow's limits."""
        client = self.client
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

        metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step in logged["metrics"]]
        params = [Param(k, v) for k, v in logged["params"].items()]
        tags = [RunTag(k, v) for k, v in logged["tags"].items()]
        for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[i:i + MAX_METRICS_PER_BATCH])
        for i in range(0, max(len(params), len(tags)), MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, params=params[i:i + MAX_PARAMS_TAGS_PER_BATCH],
                             tags=tags[i:i + MAX_PARAMS_TAGS_PER_BATCH])

    def runs_of(self, experiment: str, nb2prod_run_id: str) -> list[Any]:
        """The MLflow runs (parent and stage runs) of one nb2prod run, oldest first."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        return self.client.search_runs([exp.experiment_id], f"tags.`nb2prod.run_id` = '{nb2prod_run_id}'",
                                       order_by=["attributes.start_time ASC"], max_results=1000)

    def mark_failed(self, run_id: str, reason: str) -> None:
        """Turn an ended run FAILED with the reason (its outputs could not be saved after it finished)."""
        client = self.client
        from mlflow.entities import RunTag

        client.log_batch(run_id, tags=[RunTag("nb2prod.status", "failed"), RunTag("nb2prod.error", _text(reason))])
        client.set_terminated(run_id, "FAILED")

    def fail_if_running(self, run_id: str) -> None:
        """End a run left RUNNING by a runner that died (idempotent)."""
        if self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_terminated(run_id, "FAILED")


def environment_tags() -> dict[str, str]:
    """Python and key package versions of the process running the stages."""
    import platform

    tags = {"nb2prod.python": platform.python_version()}
    for package in ("nb2prod", "ray", "mlflow", "numpy", "pandas", "scikit-learn"):
        try:
            tags[f"nb2prod.pkg.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return tags


def source_tags(notebook: Path) -> dict[str, str]:
    """Where a run's notebook lives, as MLflow tags: its path (drift's ``previous`` reference is the last run of
    the same path) and, in a git work tree, the commit and whether the tree had changes."""
    return {"nb2prod.notebook": str(notebook), **_git_tags(notebook.parent)}


def _git_tags(directory: Path) -> dict[str, str]:
    try:
        commit = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain"], capture_output=True,
                               text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {"mlflow.source.git.commit": commit.stdout.strip(), "nb2prod.git_dirty": str(bool(dirty.stdout.strip()))}


def pip_freeze() -> str:
    """``pip freeze``-style listing of the installed distributions (no subprocess). Reading every
    distribution's metadata takes ~0.13 s, so the listing is kept until an install or uninstall changes
    a directory on ``sys.path`` (their modification times are the key)."""
    stamps = []
    for entry in sys.path:
        try:
            stamps.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            pass
    return _freeze(tuple(stamps))


@functools.lru_cache(maxsize=1)
def _freeze(stamps: tuple[tuple[str, int], ...]) -> str:
    seen = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return "\n".join(sorted(seen.values(), key=str.lower)) + "\n"


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _text(value: Any) -> str:
    """A parameter's value as MLflow stores it: text, at most PARAM_LIMIT characters, a cut one ending in ``…``
    (the run store keeps the whole value)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= PARAM_LIMIT else text[:PARAM_LIMIT - 1] + "…"
