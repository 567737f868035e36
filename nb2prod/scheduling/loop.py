"""The scheduler's loops: forever (the ``nb2prod scheduler`` process, or a thread inside a Jupyter server) and
once (``nb2prod scheduler --once``, for system cron / systemd timers). A heartbeat thread renews the
scheduler's leases independently of the ticks, so a slow tick (many launches) never lets a lease lapse."""

from __future__ import annotations

import logging
import threading
import time

from nb2prod.scheduling.service import LEASE_S, Scheduler

log = logging.getLogger("nb2prod.scheduler")


def _heartbeat(scheduler: Scheduler, stop: threading.Event, retire: bool = True) -> threading.Thread:
    """Renew at once (so the scheduler is seen alive from its start), then every third of a lease; on stop,
    retire it (``--once`` keeps its row: when a timer last ran it is worth showing)."""
    def beat() -> None:
        while True:
            try:
                scheduler.renew()
            except Exception:  # noqa: BLE001 - a busy database: the next beat retries
                log.warning("scheduler %s: lease renewal failed", scheduler.id, exc_info=True)
            if stop.wait(LEASE_S / 3):
                break
        if not retire:
            return
        try:
            scheduler.retire()
        except Exception:  # noqa: BLE001 - not fatal: its heartbeat simply ages out
            log.warning("scheduler %s: could not record its stop", scheduler.id, exc_info=True)

    thread = threading.Thread(target=beat, name="nb2prod-scheduler-heartbeat", daemon=True)
    thread.start()
    return thread


def run_forever(stop: threading.Event, interval: float = 1.0, scheduler: Scheduler | None = None) -> None:
    """Tick every ``interval`` seconds until ``stop`` is set; a failing tick is logged, never fatal.

    On stop, fires still running are left to their runs (detached processes): this scheduler's leases lapse
    and the next scheduler adopts them."""
    scheduler = scheduler or Scheduler()
    log.info("scheduler %s started (tick %gs, lease %gs)", scheduler.id, interval, LEASE_S)
    beat = _heartbeat(scheduler, stop)
    while not stop.is_set():
        began = time.monotonic()
        try:
            scheduler.tick()
        except Exception:  # noqa: BLE001 - keep firing other schedules
            log.exception("scheduler tick failed")
        stop.wait(max(0.0, interval - (time.monotonic() - began)))
    beat.join(5)
    scheduler.notifier.wait(5)
    log.info("scheduler %s stopped", scheduler.id)


def run_once(poll: float = 0.5, grace_s: float | None = None, stop: threading.Event | None = None) -> None:
    """Fire what is due now, then watch those runs to their end (retries and queued catch-up included), send
    the notifications and return."""
    scheduler = Scheduler(grace_s=grace_s)
    stop = stop or threading.Event()
    done = threading.Event()
    beat = _heartbeat(scheduler, done, retire=False)
    try:
        scheduler.tick()
        while scheduler.holds_open_fires() and not stop.is_set():
            stop.wait(poll)
            scheduler.tick()
    finally:
        done.set()
        beat.join(5)
    scheduler.notifier.wait()


class SchedulerThread:
    """A scheduler running on a daemon thread (what ``start_in_server`` returns)."""

    def __init__(self, interval: float = 1.0, grace_s: float | None = None) -> None:
        self.scheduler = Scheduler(grace_s=grace_s)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=run_forever, args=(self._stop, interval, self.scheduler),
                                       name="nb2prod-scheduler", daemon=True)

    @property
    def id(self) -> str:
        return self.scheduler.id

    def start(self) -> "SchedulerThread":
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.thread.join(timeout)


def start_in_server(interval: float = 1.0, grace_s: float | None = None) -> SchedulerThread:
    """Start a scheduler thread inside a Jupyter server (same store as every other scheduler, so they never
    double-fire). Call ``.stop()`` on the result when the server shuts down."""
    return SchedulerThread(interval, grace_s).start()
