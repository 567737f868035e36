"""Scheduler benchmarks: one tick over 1,000 schedules, due-time → run-start latency, idle CPU.

    python benchmarks/bench_scheduler.py [--schedules 1000] [--out benchmarks/results_scheduler.md]

Uses a temporary NB2PROD_HOME. Targets: tick ≤ 50 ms with 1,000 schedules; due → start ≤ 1 s; idle CPU ≈ 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import nbformat
import psutil
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_scheduler.md")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="nb2prod-sched-bench-"))
    os.environ["NB2PROD_HOME"] = str(home)
    from sqlalchemy import delete, select, update

    from nb2prod.scheduling import schedules
    from nb2prod.scheduling.models import FireAttemptRow, FireRow, ScheduleRow
    from nb2prod.scheduling.service import Scheduler, utcnow
    from nb2prod.store import runs
    from nb2prod.store.db import session

    nb = home / "nb.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["stage:s"]})]), nb)
    now = utcnow()
    for i in range(args.schedules):
        schedules.add(f"s{i}", str(nb), f"{i % 60} {i % 24} * * *", now=now)
    scheduler = Scheduler()
    scheduler.tick()
    ticks = []
    for _ in range(20):
        t = time.perf_counter()
        scheduler.tick()
        ticks.append((time.perf_counter() - t) * 1000)
    tick = statistics.median(ticks)

    # one tick that finds all 1,000 due: decide + claim each fire (launch hook records only: no processes)
    class NoLaunch:
        def launch(self, schedule, parameters):
            return "r", "0" * 64

        def status(self, run_id):
            return {"status": "running", "mlflow_run_id": None, "error": None}

        def cancel(self, run_id):
            pass

    later = now + timedelta(days=1)  # every daily schedule is due once
    due_scheduler = Scheduler(clock=lambda: later, launcher=NoLaunch(), grace_s=10**9)
    t = time.perf_counter()
    claimed = due_scheduler.tick()
    due_tick = (time.perf_counter() - t) * 1000
    with session() as s, s.begin():  # back to "nothing due" for the idle measurement
        s.execute(delete(FireAttemptRow))
        s.execute(delete(FireRow))
        s.execute(update(ScheduleRow).values(considered_until=later))

    # idle CPU of a real scheduler process over 10 s (no schedule due)
    proc = subprocess.Popen([sys.executable, "-m", "nb2prod", "scheduler"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy())
    time.sleep(5)
    p = psutil.Process(proc.pid)
    cpu0 = sum(p.cpu_times()[:2])
    time.sleep(10)
    idle_cpu = (sum(p.cpu_times()[:2]) - cpu0) / 10 * 100
    proc.terminate()
    proc.wait()

    # due → start: an every-minute schedule, measured from the due time to the fire's start record
    for row in schedules.list_all():
        schedules.remove(row["name"])
    schedules.add("due", str(nb), "* * * * *", now=utcnow())
    start = utcnow()
    wait_s = 60 - start.second + 0.5
    latency = None
    proc = subprocess.Popen([sys.executable, "-m", "nb2prod", "scheduler", "--interval", "0.5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + wait_s + 60
    while time.time() < deadline and latency is None:
        with session() as s:
            fire = s.scalar(select(FireRow))
        if fire is not None and fire.run_id is not None:
            started = datetime.fromisoformat(runs.get_run(fire.run_id)["started_at"].rstrip("Z"))
            latency = (started.replace(tzinfo=None) - fire.scheduled_time).total_seconds()
        time.sleep(0.2)
    proc.terminate()
    proc.wait()
    subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "down"], env=os.environ.copy(), capture_output=True)
    rows = [
        (f"one tick, {args.schedules} schedules (median of 20)", f"{tick:.1f} ms", "≤ 50 ms", tick <= 50),
        (f"one tick that finds {args.schedules} schedules due (decide + claim {claimed} fires; launch hook "
         "records only)", f"{due_tick:.0f} ms", "—", True),
        ("idle CPU of `nb2prod scheduler` (1 s ticks, nothing due, 1,000 schedules)", f"{idle_cpu:.1f} %", "≈ 0",
         idle_cpu < 5),
        ("due time → run recorded started (`api.start_run`: validates the notebook, spawns `nb2prod run`)",
         f"{latency:.2f} s" if latency is not None else "n/a", "≤ 1 s", latency is not None and latency <= 1),
    ]
    lines = ["# Scheduler benchmarks", "", f"`python benchmarks/bench_scheduler.py` on {os.cpu_count()} cores, "
             f"{time.strftime('%Y-%m-%d')}, SQLite store.", "", "| measure | result | target | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {'✅' if d else '❌'} |" for a, b, c, d in rows]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
