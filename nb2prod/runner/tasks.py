"""What the coordinator runs on the cluster: one stage attempt (a Ray task), warming a stage worker (a Ray task),
and cache reads and writes (an actor)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import ray

from nb2prod.runner.cluster import HEAD_NODE
from nb2prod.runner.stage import StagePayload

SYSTEM_RETRIES = 2  # Ray re-runs a stage whose worker or node died, at most this often
CACHE_IO_THREADS = 4  # cache reads and writes of parallel stages at once (each is atomic: cache.write)
LIVE_FLUSH_S = 0.1  # --log-output: how often a stage's printed lines go to the coordinator
LIVE_DELIVERY_S = 30.0  # --log-output: how long a stage waits for the coordinator to take its last lines


@ray.remote(num_returns=2, max_retries=SYSTEM_RETRIES, retry_exceptions=False)
def run_stage(payload: StagePayload, coordinator, producers: list[str], *outputs):
    """The Ray task of one stage attempt."""
    from nb2prod.runner.stage import execute

    coordinator.stage_started.remote(payload.run_id, payload.stage, payload.attempt,
                                     {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()})

    live = _LiveOutput(coordinator, payload.run_id, payload.stage) if payload.env.get("NB2PROD_LOG_OUTPUT") else None
    try:
        meta, values = execute(payload, dict(zip(producers, outputs)), live)
    finally:
        if live is not None:
            live.close()
    meta["system_retries"] = _ray_attempt()
    if payload.cache and meta["status"] == "done" and payload.cache["node"] == ray.get_runtime_context().get_node_id():
        meta["stored"] = _store(payload, meta, values)
    return meta, values


class _LiveOutput:
    """``--log-output``: a stage's output sent to the coordinator as it is printed, in whole lines and in order,
    batched every LIVE_FLUSH_S (a stage printing thousands of lines made as many actor calls)."""

    def __init__(self, coordinator, run_id: str, stage: str) -> None:
        self._send = lambda stream, text: coordinator.stage_output.remote(run_id, stage, stream, text)
        self._partial: dict[str, str] = {}  # per stream: the line being printed
        self._ready: list[tuple[str, list[str]]] = []  # whole lines not sent yet: (stream, chunks), in order
        self._sent: list[Any] = []  # the object refs of the sends (see close)
        self._lock, self._sending, self._done = threading.Lock(), threading.Lock(), threading.Event()
        self._flusher = threading.Thread(target=self._flush_every, daemon=True, name="nb2prod-live-output")
        self._flusher.start()

    def __call__(self, stream: str, text: str) -> None:
        with self._lock:
            lines = (self._partial.pop(stream, "") + text).split("\n")
            self._partial[stream] = lines.pop()
            if lines:
                if not self._ready or self._ready[-1][0] != stream:
                    self._ready.append((stream, []))
                self._ready[-1][1].append("\n".join(lines) + "\n")

    def close(self) -> None:
        """Send what is left, unfinished lines last (as whole lines), and wait until the coordinator has it: the
        stage's result, which it receives by another way, must not overtake its last lines."""
        self._done.set()
        self._flusher.join()
        with self._lock:
            self._ready += [(stream, [rest + "\n"]) for stream, rest in self._partial.items() if rest]
            self._partial.clear()
        self._flush()
        try:
            ray.get(self._sent, timeout=LIVE_DELIVERY_S)
        except ray.exceptions.RayError:  # a timeout too
            pass  # the coordinator is gone or stuck: the stage's result says what matters

    def _flush_every(self) -> None:
        while not self._done.wait(LIVE_FLUSH_S):
            self._flush()

    def _flush(self) -> None:
        with self._sending:
            with self._lock:
                ready, self._ready = self._ready, []
            if self._sent:  # only those still on their way are kept
                self._sent = ray.wait(self._sent, num_returns=len(self._sent), timeout=0)[1]
            for stream, chunks in ready:
                self._sent.append(self._send(stream, "".join(chunks)))


def _store(payload: StagePayload, meta: dict[str, Any], values: Any) -> bool:
    """Write the stage's outputs (pickled, ``cache.Pickled``) to the cache from the worker that has them; eviction is
    the coordinator's, once per run. False if the write failed (the coordinator's cache actor then tries)."""
    from nb2prod import cache

    entry = cache.entry_meta(payload.stage, payload.run_id, meta.get("metrics", {}), meta.get("cells", {}))
    try:
        cache.write(Path(payload.cache["directory"]), payload.cache["key"], values, entry, evict_after=False)
    except Exception:  # noqa: BLE001 - a cache write never fails a stage
        return False
    return True


@ray.remote(max_retries=0)
def warm_worker(modules: list[str], notebook_dir: str, ship: str | None) -> None:
    """Import, in the stage worker this task gets (a fresh one: the keeper submits it as a new cluster comes up,
    see :func:`nb2prod.runner.keeper.warm_hint`), the installed modules the first run's stages import; never the
    notebook's own modules (a stage imports those from its directory, fresh). An import that fails is the stage's
    to report."""
    import importlib

    from nb2prod.runner.shipping import unpacked

    directory = unpacked(ship) if ship else notebook_dir
    for name in modules:
        top = name.partition(".")[0]
        if os.path.exists(os.path.join(directory, top + ".py")) or os.path.isdir(os.path.join(directory, top)):
            continue
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - not a module (``from a import function``), or broken
            pass


def _ray_attempt() -> int:
    """How many times Ray already ran this task (worker or node died); 0 on the first execution."""
    try:  # the only way Ray exposes it is the core worker's attempt number
        return int(ray._private.worker.global_worker.core_worker.get_current_task_attempt_number())
    except AttributeError:
        return 0


class CacheIO:
    """Reads and writes the stage cache on the head node (the coordinator's, which was found to see the cache:
    :func:`nb2prod.runner.relay.narrow`), for stages whose worker did not write it (another node).
    An actor, so a process of its own: as Ray tasks, cache reads and writes took idle worker processes just as
    the next stages were submitted, and on a cluster with Ray's default idle-worker policy those stages then
    started in fresh workers that imported their libraries again."""

    def load(self, directory: str, key: str):
        """Outputs of a cached stage, read from the cache into the object store, still pickled (``cache.Pickled``:
        this process imports none of their libraries; the consuming stage's worker unpickles them)."""
        from nb2prod import cache

        return cache.read(Path(directory), key)

    def store(self, directory: str, key: str, outputs: Any, meta: dict[str, Any]) -> int:
        """Write one stage's outputs (``cache.Pickled``: this process imports none of their libraries) to the cache."""
        from nb2prod import cache

        return cache.write(Path(directory), key, outputs, meta)


_cache_io = None
_cache_io_lock = threading.Lock()


def cache_io():
    """This coordinator's :class:`CacheIO` actor (created on first use; it lives as long as the coordinator)."""
    global _cache_io
    with _cache_io_lock:
        if _cache_io is None:
            _cache_io = ray.remote(CacheIO).options(num_cpus=0, resources={HEAD_NODE: 0.001},
                                                    max_concurrency=CACHE_IO_THREADS).remote()
        return _cache_io
