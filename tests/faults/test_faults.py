"""Faults: a worker SIGKILLed mid-stage (system retry), a stage ignoring signals past its timeout."""

from __future__ import annotations

import time

import psutil
import pytest

from nb2prod import api
from nb2prod.contracts import RunOptions
from tests.conftest import make_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("any_cluster")]


def test_worker_killed_mid_stage_is_a_system_retry(tmp_path):
    marker = tmp_path / "attempts"
    nb = make_notebook(tmp_path / "kill.ipynb", [
        ("import os, signal, time", ["setup"]),
        (f"with open({str(marker)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
         f"if len(open({str(marker)!r}).read().split()) == 1:\n    os.kill(os.getpid(), signal.SIGKILL)\nx = 1",
         ["stage:victim"]),
        ("y = x + 1", ["stage:after"]),
    ])
    record = api.run(nb, RunOptions(no_cache=True))
    victim = record["stages"]["victim"]
    assert victim["status"] == "done" and record["stages"]["after"]["status"] == "done"
    assert victim["attempts"] == 1 and victim["system_retries"] == 1
    assert len(marker.read_text().split()) == 2


def test_stage_ignoring_sigterm_is_killed_at_its_timeout(tmp_path):
    pid_file = tmp_path / "pid"
    nb = make_notebook(tmp_path / "stubborn.ipynb", [
        (f"import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
         f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\nwhile True:\n    time.sleep(0.1)",
         ["stage:stubborn", "timeout:2"]),
    ])
    record = api.run(nb, RunOptions(no_cache=True))  # the stage loops forever: only the kill ends the run
    stage = record["stages"]["stubborn"]
    assert stage["status"] == "failed" and stage["error"]["type"] == "TimeoutError"
    pid = int(pid_file.read_text())
    deadline = time.time() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
