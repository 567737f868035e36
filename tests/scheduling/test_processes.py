"""The scheduler's processes: a notification command that times out takes everything it started with it, and
cancelling a notebook-mode run never signals a process that merely reuses its runner's pid (no Ray needed)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from nb2prod.scheduling import notify
from nb2prod.scheduling.launch import Launcher
from nb2prod.store import runs as store


def _sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(proc.info["cmdline"] or []) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_a_command_past_its_timeout_leaves_nothing_running(monkeypatch):
    monkeypatch.setattr(notify, "COMMAND_TIMEOUT_S", 1)
    with pytest.raises(subprocess.TimeoutExpired):
        notify.command("sleep 301.5 & sleep 302.5; echo done", {"schedule": "s"})
    time.sleep(0.3)
    left = _sleepers("sleep 301.5") + _sleepers("sleep 302.5")
    for proc in left:
        proc.kill()
    assert not left


def test_a_failing_command_still_raises():
    with pytest.raises(subprocess.CalledProcessError):
        notify.command("exit 3", {"schedule": "s"})
    notify.command("cat > /dev/null", {"schedule": "s"})  # reads the JSON body from stdin


def test_cancel_never_signals_a_process_that_reuses_the_runner_pid(nb2prod_home):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300.25)"], start_new_session=True)
    try:
        run_id = store.new_run_id()
        store.create_run(run_id, "/nb.ipynb", {"notebook": None}, options={"mode": "notebook"}, origin="scheduler")
        store.update_run(run_id, pid=stranger.pid)  # the runner died and its pid went to someone else
        Launcher().cancel(run_id)
        time.sleep(0.5)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
