"""Live per-stage status on stderr while a run goes on (rich), and the final summary."""

from __future__ import annotations

import time
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from nb2prod.cli.render import stderr

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

    def __call__(self, event: dict[str, Any]) -> None:
        if event["type"] == "log":
            prefix = Text(f"[{event['stage']}] ", style="bold")
            for line in event["text"].splitlines():
                stderr.print(prefix + Text(line), soft_wrap=True)
            return
        if event["type"] != "stage":
            return
        row = self.rows[event["stage"]]
        row["status"] = event["status"]
        row["attempt"] = event.get("attempt") or row["attempt"]
        if event["status"] == "running":
            row["start"] = event.get("started_at")
        if event.get("duration_s") is not None:
            row["duration"] = event["duration_s"]
        if self.live:
            self.live.update(self._table())
        elif self.plain and event["status"] not in ("queued",):
            stderr.print(f"{event['stage']}: [{_STYLES.get(event['status'], '')}]{event['status']}[/]", markup=True)

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
