"""The scheduler's loops: forever (foreground process or server thread) and once (system cron)."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import select

from nb2prod.scheduling.models import FireRow
from nb2prod.scheduling.service import Scheduler
from nb2prod.store.db import session

log = logging.getLogger("nb2prod.scheduler")


def run_forever(stop: threading.Event, interval: float = 1.0, scheduler: Scheduler | None = None) -> None:
    """Tick every ``interval`` seconds until ``stop`` is set; a failing tick is logged, never fatal."""
    scheduler = scheduler or Scheduler()
    log.info("scheduler %s started", scheduler.id)
    while not stop.is_set():
        try:
            scheduler.tick()
        except Exception:  # noqa: BLE001 - keep firing other schedules
            log.exception("scheduler tick failed")
        stop.wait(interval)
    log.info("scheduler %s stopped", scheduler.id)


def run_once(poll: float = 0.5) -> None:
    """Fire what is due now, then watch those runs to their end (retries included) and return."""
    scheduler = Scheduler()
    scheduler.tick()
    while True:
        with session() as s:
            open_fires = s.scalar(select(FireRow.id).where(FireRow.claimed_by == scheduler.id,
                                                           FireRow.status.in_(("running", "retrying"))).limit(1))
        if open_fires is None:
            return
        time.sleep(poll)
        scheduler.tick()


def start_in_server(interval: float = 1.0) -> threading.Event:
    """Run a scheduler thread inside a Jupyter server (same store; never double-fires); returns its stop event."""
    stop = threading.Event()
    threading.Thread(target=run_forever, args=(stop, interval), name="nb2prod-scheduler", daemon=True).start()
    return stop
