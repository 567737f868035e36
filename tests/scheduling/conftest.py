"""Scheduling fixtures: a controllable clock, a scripted launcher, a notebook (the store: ``store_url``)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.conftest import make_notebook


class Clock:
    """An injectable clock (naive UTC) that tests move by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class ScriptedLauncher:
    """The scheduler's launcher hook with outcomes the test decides (for the claim / lease / retry state
    machine); the end-to-end tests use the real launcher, real runs and real scheduler processes."""

    def __init__(self) -> None:
        self.launched: list[tuple[str, dict]] = []
        self.states: dict[str, str] = {}
        self.cancelled: list[str] = []
        self.fail_launch = False

    def launch(self, schedule, parameters):
        if self.fail_launch:
            raise RuntimeError("cannot start")
        run_id = f"run{len(self.launched)}"
        self.launched.append((run_id, parameters))
        self.states[run_id] = "running"
        return run_id, "0" * 64

    def status(self, run_id):
        return {"status": self.states[run_id], "mlflow_run_id": None,
                "error": None if self.states[run_id] in ("running", "done") else f"run {self.states[run_id]}"}

    def cancel(self, run_id):
        self.cancelled.append(run_id)
        self.states[run_id] = "cancelled"


@pytest.fixture
def plain_nb(tmp_path):
    return make_notebook(tmp_path / "plain.ipynb", [("day = 'x'\nn = 1", ["parameters"]),
                                                    ("out = f'{day}-{n}'", ["stage:only"])])


def fires(name: str) -> list:
    """The fire records of schedule ``name``, oldest first."""
    from sqlalchemy import select

    from nb2prod.scheduling.models import FireRow, ScheduleRow
    from nb2prod.store.db import session

    with session() as s:
        sid = s.scalar(select(ScheduleRow.id).where(ScheduleRow.name == name))
        return s.scalars(select(FireRow).where(FireRow.schedule_id == sid).order_by(FireRow.scheduled_time)).all()
