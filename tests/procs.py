"""Stopping what a test (or a benchmark) started in a session of its own."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(proc: subprocess.Popen, grace_s: float = 5, first: int = signal.SIGTERM) -> None:
    """Send ``first`` to ``proc``'s process group, give the leader ``grace_s`` to exit, then SIGKILL whatever is
    left of the group (Ray's DashboardAgent and RuntimeEnvAgent ignore SIGTERM). ``proc`` must have been started
    with ``start_new_session=True``."""
    for sig in (first, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass


def kill_named(marker: str) -> None:
    """SIGKILL every process with ``marker`` in its command line (a Ray node's temp dir: what a node left
    behind outside its group, or the node itself to simulate its loss)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and any(marker in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
