"""A team's store on PostgreSQL, end to end: two real scheduler processes, one due time, one real run
(notebook mode: papermill in a real kernel, logged to MLflow), recorded once in the shared store and seen by a
process with another ``HOME``."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from nb2prod.scheduling import schedules
from nb2prod.scheduling.service import utcnow
from nb2prod.store import runs as store
from tests.conftest import make_notebook, run_cli
from tests.scheduling.conftest import fires

pytestmark = pytest.mark.slow


def test_two_scheduler_processes_on_a_postgresql_store_run_a_due_time_once(tmp_path, postgres, nb2prod_home,
                                                                           monkeypatch):
    monkeypatch.setenv("NB2PROD_DATABASE_URL", postgres.new_database())
    notebook = make_notebook(tmp_path / "team.ipynb", [("day = 'x'", ["parameters"]), ("print(day)", [])])
    due = (utcnow() - timedelta(minutes=1)).replace(second=0, microsecond=0)
    schedules.add("team", str(notebook), f"{due.minute} {due.hour} * * *", mode="notebook", catchup="latest",
                  parameters={"day": "{{ scheduled_time:%Y-%m-%d }}"}, now=due - timedelta(seconds=5))
    procs = [subprocess.Popen([sys.executable, "-m", "nb2prod", "scheduler", "--once", "--grace", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    (fire,) = fires("team")
    assert fire.status == "done" and fire.attempts == 1, fire.error
    record = store.get_run(fire.run_id)
    assert record["status"] == "done" and record["parameters"] == {"day": due.strftime("%Y-%m-%d")}
    elsewhere = run_cli("runs", "--json", env={**os.environ, "HOME": str(tmp_path / "other-user"),
                                               "NB2PROD_HOME": str(tmp_path / "other-user" / "nb2prod")})
    assert elsewhere.returncode == 0 and fire.run_id in elsewhere.stdout, elsewhere.stderr
