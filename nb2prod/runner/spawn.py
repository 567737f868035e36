"""Detached runner processes (a run started by ``start_run``, a notebook-mode fire): each in its own
session, its output in a private log file, and reaped.

A child that exits stays a zombie until its parent collects its exit status, and a zombie passes every
"is this pid alive" check: the run it ran would look ``running`` forever (and a schedule's
``max_concurrent`` would skip every later fire). A thread per child waits for it, so the long-lived
parent (Jupyter server, scheduler, kernel) collects it the moment it exits.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from nb2prod.home import private_file


def spawn_detached(argv: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in a new session (stdout and stderr to ``log``, 0600) and reap it when it exits;
    returns its pid (which is also its session id)."""
    with open(private_file(log), "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(cwd) if cwd else None, env=env)
    threading.Thread(target=proc.wait, name=f"nb2prod-reap-{proc.pid}", daemon=True).start()
    return proc.pid
