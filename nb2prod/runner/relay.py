"""What travels between the cluster and the client when the cluster cannot see the client's disk.

nb2prod's embedded cluster shares the client's files. Any other cluster is asked first (:func:`narrow`): a
cluster on the client's machine, or whose head node mounts the client's directories, reads and writes the
tracking store and the cache itself, as the embedded one does. What it cannot see travels:

- MLflow, when the tracking URI is client-local (SQLite, file store, path): the coordinator records each write
  as a ``tracking`` event (:class:`RelayTracker`) and the client's driver replays it on the one
  :class:`~nb2prod.tracking.Tracker` (:class:`Replay`); placeholder ids stand for MLflow's ids until the client
  has created the runs. The registration, drift and gate hooks need answers (runs, model versions, aliases):
  their ``MlflowClient`` calls (:class:`RelayClient`) are ``ask`` events that the driver answers through the
  coordinator. A server or database URI is written from the cluster directly.
- The stage cache lives with the driver (the client, or a detached run's job driver on the head node): cache
  hits travel to the cluster as objects the driver puts (:func:`put_hits`); new outputs travel back as object
  refs in ``cache`` events that the driver writes to its cache (:class:`Replay`), still pickled: the driver never
  imports what they hold (their libraries, the notebook's own modules).
- Stage artifacts and logs travel inside each stage's result (:func:`nb2prod.runner.stage.execute`), the
  executed notebook inside the run's result.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from nb2prod.contracts import RunEvent
from nb2prod.home import probe_name

PLACEHOLDER = "relay:"
ASK_TIMEOUT_S = 600.0  # a driver that has not answered by then is taken for gone (the call raises)


class RelayTracker:
    """The coordinator's tracker for a client-local store: MLflow writes become events, ids placeholders."""

    relayed = True

    def __init__(self, uri: str, relay: Callable[..., None]) -> None:
        self.uri, self._emit = uri, relay
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._experiments: dict[str, str] = {}
        self._answers: dict[str, tuple] = {}
        self._answered = threading.Condition()
        self.client = RelayClient(self.ask)

    def _op(self, op: str, *args: Any, returns: bool = False, **kwargs: Any) -> str | None:
        with self._lock:  # placeholders are minted and emitted in one order
            result = f"{PLACEHOLDER}{next(self._ids)}" if returns else None
            self._emit(type="tracking", op=op, args=list(args), kwargs=kwargs, result=result)
        return result

    def experiment_id(self, name: str) -> str:
        if name not in self._experiments:
            self._experiments[name] = self._op("experiment_id", name, returns=True)
        return self._experiments[name]

    def start_run(self, experiment_id: str, name: str, tags: dict[str, str], params: dict[str, Any] | None = None,
                  parent: str | None = None, start_time: float | None = None) -> str:
        return self._op("start_run", experiment_id, name, tags, params=params, parent=parent, start_time=start_time,
                        returns=True)

    def end_run(self, run_id: str, status: str, metrics: dict[str, float] | None = None,
                tags: dict[str, str] | None = None, texts: dict[str, str] | None = None,
                files: dict[str, bytes] | None = None, end_time: float | None = None) -> None:
        self._op("end_run", run_id, status, metrics, tags, texts=texts, files=files, end_time=end_time)

    def log_recorded(self, run_id: str, logged: dict[str, Any]) -> None:
        self._op("log_recorded", run_id, logged)

    def fail_if_running(self, run_id: str) -> None:
        self._op("fail_if_running", run_id)

    def ask(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of the client's ``MlflowClient`` and wait for its answer (after every earlier write)."""
        token = f"ask:{next(self._ids)}"
        with self._answered:
            self._emit(type="ask", method=method, args=list(args), kwargs=kwargs, token=token)
            if not self._answered.wait_for(lambda: token in self._answers, timeout=ASK_TIMEOUT_S):
                raise TimeoutError(f"the client did not answer MLflow's {method} within {ASK_TIMEOUT_S:.0f}s")
            outcome = self._answers.pop(token)
        if outcome[0] == "ok":
            return outcome[1]
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import ErrorCode

        _, kind, code, message = outcome
        if code:
            raise MlflowException(message, error_code=ErrorCode.Value(code))
        raise RuntimeError(f"{kind}: {message}")

    def answer(self, token: str, outcome: tuple) -> None:
        """The driver's answer to :meth:`ask` (``("ok", value)`` or ``("error", type, MLflow code, message)``)."""
        with self._answered:
            self._answers[token] = outcome
            self._answered.notify_all()


class RelayClient:
    """The client's ``MlflowClient`` as the coordinator sees it: every call is answered by the driver; files
    travel as bytes (the client cannot read the cluster's temp dirs, nor the cluster the client's)."""

    def __init__(self, ask: Callable[..., Any]) -> None:
        self._ask = ask

    def __getattr__(self, method: str) -> Callable[..., Any]:
        return lambda *args, **kwargs: self._ask(method, *args, **kwargs)

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        self._ask("log_artifacts", run_id, _read_tree(Path(local_dir), Path(local_dir)), artifact_path)

    def download_artifacts(self, run_id: str, path: str, dst_path: str) -> str:
        files, name = self._ask("download_artifacts", run_id, path)
        _write_tree(Path(dst_path), files)
        return str(Path(dst_path) / name)


def _read_tree(path: Path, base: Path) -> dict[str, bytes]:
    """The file ``path``, or every file under it, by its path relative to ``base``."""
    return {str(p.relative_to(base)): p.read_bytes() for p in [path, *path.rglob("*")] if p.is_file()}


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def narrow(request, coordinator) -> None:
    """Relay only what the coordinator cannot reach itself: the tracking store (an absolute SQLite path) and the
    cache are the cluster's own when the coordinator reads, in their directories, a probe file just written."""
    import ray

    from nb2prod.tracking import sqlite_path

    dirs: dict[str, Path] = {}
    database = sqlite_path(request.tracking_uri)
    if request.relay_tracking and database is not None and database.is_absolute():
        dirs["tracking"] = database.parent
    if request.relay_cache and request.cache_dir:
        dirs["cache"] = Path(request.cache_dir)
    if not dirs:
        return
    token = secrets.token_hex(16)
    probes = {what: directory / probe_name(token) for what, directory in dirs.items()}
    written = []
    try:
        for path in probes.values():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            written.append(path)
            with os.fdopen(fd, "w") as f:
                f.write(token)
        seen = set(ray.get(coordinator.sees.remote([str(p) for p in probes.values()], token)))
    except OSError:  # a directory this client cannot write: relay, as for any cluster
        return
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    request.relay_tracking = request.relay_tracking and str(probes.get("tracking")) not in seen
    request.relay_cache = request.relay_cache and str(probes.get("cache")) not in seen


def seen_probes(paths: list[str], token: str) -> list[str]:
    """The probe files (:func:`narrow`) this process reads with ``token`` in them, in a directory it may write."""
    seen = []
    for path in paths:
        try:
            if Path(path).read_text() == token and os.access(Path(path).parent, os.W_OK):
                seen.append(path)
        except OSError:
            continue
    return seen


def put_hits(request) -> None:
    """Put the cached outputs the run's stages will read into the object store (from the driver's cache), still
    pickled: the stages' workers unpickle them, the client imports none of their libraries."""
    import ray

    from nb2prod import cache

    runs = [n for n in request.spec.stages if n not in request.hits and (request.only is None or n in request.only)]
    needed = {u for n in runs for u in request.spec.stages[n].upstream if u in request.hits}
    request.cached = {name: ray.put(cache.read(Path(request.cache_dir), request.keys[name])) for name in sorted(needed)}


class Replay:
    """The driver's side: applies ``tracking`` and ``cache`` events, answers ``ask`` events (``answer(token,
    outcome)`` sends the outcome to the coordinator), maps placeholders to MLflow's ids."""

    def __init__(self, tracking_uri: str, cache_dir: str | None, answer: Callable[[str, tuple], None]) -> None:
        self.tracking_uri, self.cache_dir, self.answer = tracking_uri, cache_dir, answer
        self.ids: dict[str, str] = {}
        self._tracker = None

    def handle(self, event: RunEvent | dict[str, Any]) -> bool:
        """Apply relayed work (a dict); False for a :class:`RunEvent` (its ids may be placeholders: see
        :meth:`real`)."""
        if isinstance(event, RunEvent):
            return False
        if event["type"] == "tracking":
            result = getattr(self.tracker(), event["op"])(*self.real(event["args"]), **self.real(event["kwargs"]))
            if event["result"]:
                self.ids[event["result"]] = result
            return True
        if event["type"] == "ask":
            try:
                outcome: tuple = ("ok", self._call(event["method"], self.real(event["args"]),
                                                   self.real(event["kwargs"])))
            except Exception as exc:  # noqa: BLE001 - raised again in the coordinator
                outcome = ("error", type(exc).__name__, getattr(exc, "error_code", None), str(exc))
            self.answer(event["token"], outcome)
            return True
        if event["type"] == "cache":  # the outputs still pickled (cache.Pickled): nothing of the stage is imported here
            import ray

            from nb2prod import cache

            try:
                cache.write(Path(self.cache_dir), event["key"], ray.get(event["outputs"]), event["entry"])
            except Exception:  # noqa: BLE001 - a cache write never fails a run (the stage is not cached)
                pass
            return True
        return False

    def tracker(self):
        """The one :class:`~nb2prod.tracking.Tracker` of the client's store (opened on first use)."""
        if self._tracker is None:
            from nb2prod.tracking import Tracker

            self._tracker = Tracker(self.tracking_uri)
        return self._tracker

    def _call(self, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """An ``MlflowClient`` call asked by :class:`RelayClient`, with its files as bytes."""
        client = self.tracker().client
        with tempfile.TemporaryDirectory() as tmp:
            if method == "log_artifacts":
                run_id, files, artifact_path = args
                _write_tree(Path(tmp), files)
                return client.log_artifacts(run_id, tmp, artifact_path)
            if method == "download_artifacts":
                local = Path(client.download_artifacts(*args, dst_path=tmp))
                return _read_tree(local, local.parent), local.name
            return getattr(client, method)(*args, **kwargs)

    def real(self, value: Any) -> Any:
        """``value`` with every placeholder id replaced by the MLflow id it stands for."""
        if isinstance(value, RunEvent):
            return dataclasses.replace(value, mlflow_run_id=self.real(value.mlflow_run_id),
                                       experiment_id=self.real(value.experiment_id))
        if isinstance(value, str):
            return self.ids.get(value, value)
        if isinstance(value, list):
            return [self.real(v) for v in value]
        if isinstance(value, dict):
            return {k: self.real(v) for k, v in value.items()}
        return value
