"""What travels between the cluster and the client when the cluster cannot see the client's disk.

Only nb2prod's embedded cluster shares the client's files; on any other cluster nothing on the cluster side
reads or writes them:

- MLflow, when the tracking URI is client-local (SQLite, file store, path): the coordinator records each write
  as a ``tracking`` event (:class:`RelayTracker`) and the client's driver replays it on the one
  :class:`~nb2prod.tracking.Tracker` (:class:`Replay`); placeholder ids stand for MLflow's ids until the client
  has created the runs. A server or database URI is written from the cluster directly.
- The stage cache lives with the driver (the client, or a detached run's job driver on the head node): cache
  hits travel to the cluster as objects the driver puts (:func:`put_hits`); new outputs travel back as object
  refs in ``cache`` events that the driver writes to its cache (:class:`Replay`).
- Stage artifacts and logs travel inside each stage's result (:func:`nb2prod.runner.stage.execute`), the
  executed notebook inside the run's result.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any, Callable

PLACEHOLDER = "relay:"


class RelayTracker:
    """The coordinator's tracker for a client-local store: MLflow writes become events, ids placeholders."""

    relayed = True

    def __init__(self, uri: str, emit: Callable[..., None]) -> None:
        self.uri, self._emit = uri, emit
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._experiments: dict[str, str] = {}

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
                  parent: str | None = None) -> str:
        return self._op("start_run", experiment_id, name, tags, params=params, parent=parent, returns=True)

    def end_run(self, run_id: str, status: str, metrics: dict[str, float] | None = None,
                tags: dict[str, str] | None = None, texts: dict[str, str] | None = None,
                files: dict[str, bytes] | None = None) -> None:
        self._op("end_run", run_id, status, metrics, tags, texts=texts, files=files)

    def fail_if_running(self, run_id: str) -> None:
        self._op("fail_if_running", run_id)


def put_hits(request) -> None:
    """Put the cached outputs the run's stages will read into the object store (from the driver's cache)."""
    import ray

    from nb2prod import cache

    runs = [n for n in request.spec.stages if n not in request.hits and (request.only is None or n in request.only)]
    needed = {u for n in runs for u in request.spec.stages[n].upstream if u in request.hits}
    request.cached = {name: ray.put(cache.load(Path(request.cache_dir), request.keys[name])) for name in sorted(needed)}


class Replay:
    """The driver's side: applies ``tracking`` and ``cache`` events, maps placeholders to MLflow's ids."""

    def __init__(self, tracking_uri: str, cache_dir: str | None) -> None:
        self.tracking_uri, self.cache_dir = tracking_uri, cache_dir
        self.ids: dict[str, str] = {}
        self._tracker = None

    def handle(self, event: dict[str, Any]) -> bool:
        """Apply a relayed event; False for events that are not relayed work (they may carry placeholders:
        see :meth:`real`)."""
        if event["type"] == "tracking":
            if self._tracker is None:
                from nb2prod.tracking import Tracker

                self._tracker = Tracker(self.tracking_uri)
            result = getattr(self._tracker, event["op"])(*self.real(event["args"]), **self.real(event["kwargs"]))
            if event["result"]:
                self.ids[event["result"]] = result
            return True
        if event["type"] == "cache":
            import ray

            from nb2prod import cache

            cache.write(Path(self.cache_dir), event["key"], ray.get(event["outputs"]), event["entry"])
            return True
        return False

    def real(self, value: Any) -> Any:
        """``value`` with every placeholder id replaced by the MLflow id it stands for."""
        if isinstance(value, str):
            return self.ids.get(value, value)
        if isinstance(value, list):
            return [self.real(v) for v in value]
        if isinstance(value, dict):
            return {k: self.real(v) for k, v in value.items()}
        return value
