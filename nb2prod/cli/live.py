"""Live per-stage status on stderr while a run goes on (rich), and the final summary."""

from __future__ import annotations

import time
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from nb2prod.cli.render import stderr
from nb2prod.contracts import EventKind, RunEvent

_STYLES = {"pending": "dim", "queued": "dim", "running": "cyan", "retrying": "yellow", "done": "green",
           "cached": "blue", "failed": "red", "skipped": "dim", "cancelled": "magenta"}


class LiveStatus:
    """An observer for :func:`nb2prod.api.run` that renders a table of stages."""

    def __init__(self, stages: list[str], enabled: bool = True) -> None:
        self.rows = {name: {"status": "pending", "attempt": 0, "start": None, "duration": None} for name in stages}
        self.started = time.time()
        self.live = Live(self._table(), console=stderr, refresh_per_second=8, transient=False) \
            if enabled and stderr.is_terminal else None
        self.plain = enabled and self.live is None

    def __enter__(self) -> "LiveStatus":
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    def __call__(self, event: RunEvent) -> None:
        if event.kind is EventKind.LOG:
            prefix = Text(f"[{event.stage}] ", style="bold")
            for line in event.text.splitlines():
                stderr.print(prefix + Text(line), soft_wrap=True)
            return
        progress = event.progress()
        if not progress:
            return
        row, shown = self.rows[event.stage], progress["status"]
        row["status"] = shown
        row["attempt"] = progress.get("attempt") or row["attempt"]
        row["start"] = progress.get("started_at", row["start"])
        row["duration"] = progress.get("duration_s", row["duration"])
        if self.live:
            self.live.update(self._table())
        elif self.plain and event.kind is not EventKind.QUEUED:
            stderr.print(f"{event.stage}: [{_STYLES.get(shown, '')}]{shown}[/]", markup=True)

    def _table(self) -> Table:
        table = Table("stage", "status", "attempt", "time", box=None, pad_edge=False,
                      title=f"elapsed {time.time() - self.started:.1f}s", title_justify="left")
        for name, row in self.rows.items():
            duration = row["duration"]
            if duration is None and row["status"] == "running" and row["start"]:
                duration = time.time() - row["start"]
            table.add_row(name, Text(row["status"], style=_STYLES.get(row["status"], "")),
                          str(row["attempt"] or ""), f"{duration:.2f}s" if duration is not None else "")
        return table
