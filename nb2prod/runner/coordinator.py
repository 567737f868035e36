"""The warm coordinator: a detached Ray actor that orchestrates runs and writes MLflow.

Living in the cluster, it keeps mlflow imported and the tracking store open, and its stage
tasks reuse warm workers; a fresh ``nb2prod run`` process only connects, submits a
:class:`RunRequest` and polls events. One coordinator per nb2prod code fingerprint.

Concurrency groups: ``run`` calls hold a thread for a whole run, at most ``NB2PROD_COORDINATOR_RUNS``
at once (default 64; more wait for a free slot); control calls (``poll``, ``cancel``, ``stage_started``,
``ready``, ``version``, ``busy``) have threads of their own, so a client is answered — and its run is not
taken for abandoned — however many runs are in flight; ``stage_output`` has one thread (lines keep their order).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray

from nb2prod.contracts import EventKind, RunEvent
from nb2prod.errors import Nb2ProdError
from nb2prod.runner.cluster import HEAD_NODE, NAMESPACE, session_dir
from nb2prod.runner.hooks import default_hooks
from nb2prod.runner.orchestrator import Orchestration
from nb2prod.runner.request import RunRequest

CLIENT_TIMEOUT_S = 30.0
ENDED_GRACE_S = 10.0  # a run that just ended still has a client reading its last events
KEEPER_WAIT_S = 20.0
DEFAULT_RUNS = 64
CONTROL_THREADS = 4


class RunState:
    """Per-run events and control flags, shared by the orchestration thread and ``poll``."""

    def __init__(self) -> None:
        self.events: list[RunEvent | dict[str, Any]] = []  # dicts: relayed work (see runner/relay.py)
        self.cancelled = False
        self.last_poll = time.time()
        self.starts: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.finished: set[str] = set()  # stages with a final status: late "started" calls are not news
        self.relay_tracker = None  # the RelayTracker of a run whose MLflow writes travel to its client
        self.lock = threading.Lock()

    def emit(self, event: RunEvent) -> None:
        """One event of the run's stream."""
        with self.lock:
            self.events.append(event)

    def relay(self, **work: Any) -> None:
        """Work for the client's driver in the same ordered stream: a ``tracking`` write or a ``cache`` write."""
        with self.lock:
            self.events.append(work)

    def client_gone(self) -> bool:
        return time.time() - self.last_poll > CLIENT_TIMEOUT_S


class Coordinator:
    """Actor body; see :func:`get_coordinator`."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        from nb2prod.runner.keeper import workdir

        # Ray starts an actor in its raylet's working directory (where `ray start` ran, which may be deleted, and
        # MLflow resolves a store's default artifact root against it): the coordinator lives in a private one
        os.chdir(workdir(session_dir()))
        self._code = code_fingerprint()
        self._runs: dict[str, RunState] = {}
        self._trackers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._active = 0  # runs being orchestrated now
        self._last_end = 0.0
        threading.Thread(target=_preload, args=(tracking_uri,), name="preload", daemon=True).start()

    @ray.method(concurrency_group="control")
    def ready(self) -> bool:
        return True

    @ray.method(concurrency_group="control")
    def version(self) -> dict[str, str]:
        """The nb2prod version and code fingerprint this coordinator runs (clients check it first)."""
        return code_version(self._code)

    @ray.method(concurrency_group="control")
    def busy(self) -> bool:
        """Whether a run is in flight or ended so recently that its client may still be polling it (a stale
        coordinator is retired only when this is False)."""
        return self._active > 0 or time.time() - self._last_end < ENDED_GRACE_S

    def tracker(self, uri: str):
        with self._lock:
            if uri not in self._trackers:
                from nb2prod.tracking import Tracker

                self._trackers[uri] = Tracker(uri)
            return self._trackers[uri]

    def warm(self, tracking_uri: str) -> None:
        """Import mlflow and open the store ahead of the first run."""
        self.tracker(tracking_uri).client.search_experiments(max_results=1)

    @ray.method(concurrency_group="run")
    def run(self, request: RunRequest) -> dict[str, Any]:
        """Orchestrate one run to its end; returns the result (also streamed through ``poll``)."""
        state = self._runs.setdefault(request.run_id, RunState())
        handle = ray.get_runtime_context().current_actor
        with self._lock:
            self._active += 1
        try:
            if request.relay_tracking:
                from nb2prod.runner.relay import RelayTracker

                tracker = state.relay_tracker = RelayTracker(request.tracking_uri, state.relay)
            else:
                tracker = self.tracker(request.tracking_uri)
            return Orchestration(request, state, default_hooks(request, tracker), handle).execute()
        except Exception as exc:
            if not _picklable(exc):  # Ray would hand the client an UnserializableException: "coordinator lost"
                raise Nb2ProdError(f"{type(exc).__name__}: {str(exc).strip()}") from None
            raise
        finally:
            with self._lock:
                self._active -= 1
                self._last_end = time.time()
            threading.Timer(300, self._runs.pop, args=(request.run_id, None)).start()

    @ray.method(concurrency_group="control")
    def poll(self, run_id: str, cursor: int) -> tuple[list[RunEvent | dict[str, Any]], int]:
        """Events since ``cursor``; polling also tells the coordinator the client is alive."""
        state = self._runs.setdefault(run_id, RunState())
        state.last_poll = time.time()
        with state.lock:
            return state.events[cursor:], len(state.events)

    @ray.method(concurrency_group="control")
    def sees(self, paths: list[str], token: str) -> list[str]:
        """Which of the client's probe files this coordinator reads (see :func:`nb2prod.runner.relay.narrow`)."""
        from nb2prod.runner.relay import seen_probes

        return seen_probes(paths, token)

    @ray.method(concurrency_group="control")
    def answer(self, run_id: str, token: str, outcome: tuple) -> None:
        """The client's answer to a relayed MLflow call (see :class:`nb2prod.runner.relay.RelayTracker`)."""
        state = self._runs.get(run_id)
        if state is not None and state.relay_tracker is not None:
            state.relay_tracker.answer(token, outcome)

    @ray.method(concurrency_group="control")
    def touch(self, run_id: str) -> None:
        """The run's client is alive (it may be too busy to poll)."""
        if run_id in self._runs:
            self._runs[run_id].last_poll = time.time()

    @ray.method(concurrency_group="control")
    def cancel(self, run_id: str) -> None:
        if run_id in self._runs:
            self._runs[run_id].cancelled = True

    @ray.method(concurrency_group="control")
    def stage_started(self, run_id: str, stage: str, attempt: int, info: dict[str, Any]) -> None:
        state = self._runs.get(run_id)
        if state is not None:
            t = time.time()
            state.starts.setdefault((stage, attempt), []).append({"t": t, **info})
            retries = len(state.starts[(stage, attempt)]) - 1
            if stage in state.finished:
                return
            state.emit(RunEvent(EventKind.RUNNING, stage=stage, attempt=attempt, started_at=t,
                                system_retries=retries, node=info.get("node")))

    @ray.method(concurrency_group="output")  # one thread: lines keep their order
    def stage_output(self, run_id: str, stage: str, stream: str, text: str) -> None:
        state = self._runs.get(run_id)
        if state is not None:
            state.emit(RunEvent(EventKind.LOG, stage=stage, stream=stream, text=text))


PRELOAD_NICE = 10


def _preload(tracking_uri: str | None) -> None:
    """MLflow imported (and the first run's store opened) while the coordinator waits for its first run (see
    :func:`nb2prod.tracking.preload`): at a lower CPU priority (this thread only), for on a cold cluster the
    stage workers starting meanwhile are the run's critical path, not MLflow (its writes are off it)."""
    from nb2prod.tracking import preload

    if sys.platform.startswith("linux"):  # where a thread id names the thread alone
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PRELOAD_NICE)
        except OSError:
            pass
    try:
        preload(tracking_uri)
    except Exception:  # noqa: BLE001 - only a head start: the first run reports a broken MLflow
        pass


def code_fingerprint() -> str:
    """Hash of nb2prod's own source: a coordinator never runs stale nb2prod code."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def coordinator_name(fingerprint: str | None = None) -> str:
    """The coordinator's actor name for this nb2prod code (or for ``fingerprint``, already computed)."""
    return f"coordinator-{fingerprint or code_fingerprint()}"


def code_version(fingerprint: str | None = None) -> dict[str, str]:
    """This process's nb2prod version and code fingerprint."""
    from nb2prod import __version__

    return {"version": __version__, "code": fingerprint or code_fingerprint()}


def get_coordinator(embedded: bool = False, warm: dict[str, Any] | None = None):
    """The cluster's coordinator for this nb2prod code, checked to run the same code as this client.

    A keeper (a never-ending driver, :mod:`nb2prod.runner.keeper`) creates it, so that its stage workers
    stay warm across clients: on the embedded cluster the keeper starts with the cluster; on any other
    cluster the first client launches one inside the cluster. A client creates the coordinator itself
    only if no keeper brings it up in time. ``warm``: what a keeper launched here warms a stage worker with.
    """
    fingerprint = code_fingerprint()
    name = coordinator_name(fingerprint)
    actor = _named(name)
    if actor is None:
        if not embedded:
            from nb2prod.runner.keeper import launch

            launch(fingerprint, warm)
        deadline = time.time() + KEEPER_WAIT_S
        while actor is None and time.time() < deadline:
            time.sleep(0.05)
            actor = _named(name)
        actor = actor or create_coordinator(name)
    check_version(actor, code_version(fingerprint), "coordinator")
    return actor


def create_coordinator(name: str, tracking_uri: str | None = None):
    """Create (detached, on the head node) the coordinator named ``name`` unless it exists; retire stale ones.
    ``tracking_uri``: a store it opens ahead of its first run (the first run's, on the embedded cluster)."""
    groups = {"run": concurrent_runs(), "control": CONTROL_THREADS, "output": 1}
    actor = ray.remote(concurrency_groups=groups)(Coordinator).options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
        resources={HEAD_NODE: 0.001},  # on the head node: losing a worker node never loses the coordinator
        max_restarts=-1, runtime_env=worker_runtime_env()).remote(tracking_uri)
    retire_stale(name)
    return actor


def worker_runtime_env() -> dict[str, Any] | None:
    """The runtime env of the coordinator and of the stage workers it starts (which inherit it), for a keeper's
    process: in a cluster nb2prod did not start, nb2prod's lazy imports on their PYTHONPATH, as the embedded
    cluster's processes have (~2.5 s of CPU less for every fresh worker); None on the embedded cluster."""
    from nb2prod.runner.cluster import with_lazy_imports
    from nb2prod.runner.keeper import WORKER_PYTHONPATH

    workers = os.environ.get(WORKER_PYTHONPATH)
    return {"env_vars": {"PYTHONPATH": with_lazy_imports(workers)}} if workers is not None else None


def concurrent_runs() -> int:
    """How many runs a new coordinator orchestrates at once: ``NB2PROD_COORDINATOR_RUNS`` (default 64), read
    where the coordinator is created (the keeper, started with the cluster, or the first client)."""
    text = os.environ.get("NB2PROD_COORDINATOR_RUNS", str(DEFAULT_RUNS))
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise Nb2ProdError(f"NB2PROD_COORDINATOR_RUNS must be a positive integer, got {text!r}")
    return value


def check_version(actor, mine: dict[str, str], what: str) -> None:
    """Raise a clear error when ``actor`` (a coordinator or keeper) runs other nb2prod code than this client."""
    from nb2prod.errors import Nb2ProdError

    try:
        theirs = ray.get(actor.version.remote(), timeout=120)
    except AttributeError:
        theirs = {"version": "older than 0.1 (no version check)", "code": "?"}
    except ray.exceptions.RayActorError as exc:
        raise Nb2ProdError(f"nb2prod's {what} could not start in the Ray cluster; is nb2prod {mine['version']} "
                           f"installed on the cluster's nodes? ({str(exc).splitlines()[0]})") from None
    if theirs != mine:
        ray.kill(actor)  # named for this client's code but running other code: of no use to anyone
        raise Nb2ProdError(f"this client runs nb2prod {mine['version']} (code {mine['code']}), but the Ray "
                           f"cluster's nb2prod {what} runs nb2prod {theirs['version']} (code {theirs['code']}); "
                           "install the same nb2prod on the client and on the cluster's nodes")


def _named(name: str):
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def retire_stale(current: str) -> int:
    """Stop coordinators of other nb2prod code (an upgrade) once they are not busy, so an upgrade never kills a
    running pipeline; returns how many stale ones are still draining."""
    draining = 0
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] != NAMESPACE or not entry["name"].startswith("coordinator-") or entry["name"] == current:
            continue
        try:
            actor = ray.get_actor(entry["name"], namespace=NAMESPACE)
        except ValueError:
            continue
        try:
            busy = ray.get(actor.busy.remote(), timeout=10)
        except ray.exceptions.GetTimeoutError:
            busy = True  # slow to answer is not idle: ask again later
        except (ray.exceptions.RayActorError, AttributeError):
            busy = False  # dead, or from before nb2prod 0.1 drained (no busy()): nothing to wait for
        if busy:
            draining += 1
        else:
            ray.kill(actor)
    return draining


def _picklable(exc: BaseException) -> bool:
    """Whether ``exc`` survives the trip to the client (some libraries' exceptions cannot be rebuilt from their
    pickle, MLflow's unsupported-URI error for one)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure to rebuild it
        return False
    return True
