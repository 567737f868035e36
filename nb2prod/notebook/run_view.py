"""Live views for the ``%nb2prod`` magics: one run's stages (ipywidgets, or plain text lines where no
widget frontend exists) and the parameter form. They only show what the run store and the runner's
events say; they hold no pipeline logic.
"""

from __future__ import annotations

import html
import os
import sys
import threading
import time
from typing import Any, Callable

from nb2prod.contracts import EventKind, RunEvent, location, mlflow_link, outcome_lines

POLL_S = 0.5
FINISHED_RUN = frozenset({"done", "failed", "cancelled", "interrupted"})
FINISHED_STAGE = frozenset({"done", "failed", "cached", "skipped", "cancelled"})
# status -> (progress value out of 2, progress bar style, badge colour)
_LOOK = {
    "pending": (0, "", "#888"), "queued": (0, "", "#888"), "running": (1, "info", "#1f77b4"),
    "retrying": (1, "warning", "#d68a00"), "done": (2, "success", "#2a9d3f"), "cached": (2, "info", "#3b6fb6"),
    "failed": (2, "danger", "#c62828"), "skipped": (2, "", "#888"), "cancelled": (2, "warning", "#9c27b0"),
    "interrupted": (2, "danger", "#c62828"),
}


def widget_frontend() -> bool:
    """Whether a frontend that renders ipywidgets is attached to this kernel.

    A kernel started by a Jupyter server (``JPY_SESSION_NAME``) or VS Code has one; terminal IPython and
    headless execution (papermill, nbclient) do not. ``NB2PROD_WIDGETS=1|0`` overrides the guess.
    """
    forced = os.environ.get("NB2PROD_WIDGETS")
    if forced is not None:
        return forced.strip().lower() in ("1", "true", "yes")
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    in_kernel = shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
    return in_kernel and bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


class RunView:
    """One run's live status: an observer for ``api.run`` events and a follower of ``api.get_run``.

    ``widget=True`` builds ipywidgets (display it with ``display(view)``); otherwise it prints one line per
    stage change and a summary, to ``out`` (default stdout).
    """

    def __init__(self, stages: list[str], *, widget: bool, run_id: str | None = None,
                 out: Callable[[str], None] | None = None) -> None:
        self.run_id = run_id
        self.status = "running"
        self.record: dict[str, Any] | None = None
        self.rows = {name: {"status": "pending", "attempts": 0, "duration": None, "started": None, "error": None}
                     for name in stages}
        self.mlflow_run_id: str | None = None
        self.started = time.time()
        self.ended: float | None = None
        self.widget = None
        self.finished = threading.Event()
        self._lock = threading.RLock()
        self._out = out or (lambda line: print(line, flush=True))
        self._printed: dict[str, str] = {}
        self._partial: dict[str, str] = {}
        if widget:
            self._build()

    # -- inputs -------------------------------------------------------------------------------------
    def __call__(self, event: RunEvent) -> None:
        """Observer for :func:`nb2prod.api.run` events."""
        with self._lock:
            progress = event.progress()
            if event.kind is EventKind.LOG:  # --log-output: output as it comes (text mode; widgets show it on failure)
                self._log_text(event.stage or "", event.text)
            elif event.kind is EventKind.RUN:
                self.mlflow_run_id = event.mlflow_run_id or self.mlflow_run_id
            elif progress and event.stage in self.rows:
                row = self.rows[event.stage]
                row["status"] = progress["status"]
                row["attempts"] = max(row["attempts"], progress.get("attempt", 0))
                row["started"] = progress.get("started_at", row["started"])
                row["duration"] = progress.get("duration_s", row["duration"])
                row["error"] = progress.get("error", row["error"])
                self._stage_changed(event.stage)
            elif event.kind is EventKind.END:
                self.status = event.status or self.status
            self._refresh()

    def update(self, record: dict[str, Any]) -> None:
        """Show a run record (``api.get_run``)."""
        with self._lock:
            self.record, self.run_id, self.status = record, record["id"], record["status"]
            self.mlflow_run_id = record.get("mlflow_run_id") or self.mlflow_run_id
            for name, stage in record["stages"].items():
                row = self.rows.setdefault(name, {"status": "pending", "attempts": 0, "duration": None,
                                                  "started": None, "error": None})
                before = row["status"]
                row.update(status=stage["status"], attempts=stage.get("attempts") or row["attempts"],
                           error=stage.get("error") or row["error"])
                if stage.get("duration_s") is not None:
                    row["duration"] = stage["duration_s"]
                elif stage["status"] == "running" and stage.get("started_at"):
                    row["started"] = _timestamp(stage["started_at"])
                if self.widget is not None and name not in self._rows:
                    self._add_row(name)
                if before != row["status"]:
                    self._stage_changed(name)
            if record.get("duration_s") is not None and record["status"] in FINISHED_RUN:
                self.ended = self.started + record["duration_s"]
            self._refresh()
            if record["status"] in FINISHED_RUN:
                self._finish()

    def follow(self, run_id: str, get_run: Callable[[str], dict[str, Any]], interval: float = POLL_S) -> None:
        """Poll ``get_run(run_id)`` on a daemon thread until the run ends (the kernel stays usable)."""
        self.run_id = run_id

        def loop() -> None:
            while not self.finished.is_set():
                try:
                    self.update(get_run(run_id))
                except Exception as exc:  # noqa: BLE001 - a vanished store must not kill the thread silently
                    self._set_header(f"cannot read run {run_id}: {exc}")
                    return
                self.finished.wait(interval)

        threading.Thread(target=loop, name=f"nb2prod-follow-{run_id}", daemon=True).start()

    def tick(self, interval: float = POLL_S) -> None:
        """Refresh the elapsed times on a daemon thread while a foreground run goes on."""
        if self.widget is None:
            return

        def loop() -> None:
            while not self.finished.wait(interval):
                with self._lock:
                    self._refresh()

        threading.Thread(target=loop, name="nb2prod-tick", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the followed run has ended; True if it did."""
        return self.finished.wait(timeout)

    def done(self, record: dict[str, Any]) -> None:
        """The final record of a foreground run."""
        self.update(record)
        self._finish()

    # -- output -------------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.widget is not None:
            display(self.widget)
        else:
            print(self.text())

    def text(self) -> str:
        """The whole run as plain text (what ``%nb2prod status`` prints without widgets)."""
        lines = [f"run {self.run_id or '(starting)'} {self.status} — elapsed {self._elapsed():.1f}s"
                 + (f" — MLflow run {self.mlflow_run_id}" if self.mlflow_run_id else "")]
        for name, row in self.rows.items():
            attempts = f"  attempts {row['attempts']}" if row["attempts"] else ""
            lines.append(f"  {name:<20} {row['status']:<10} {_seconds(self._duration(row)):>8}{attempts}")
            if row["status"] == "failed" and row["error"]:
                lines.append(f"    {self._error_line(row['error'])}")
        lines += [f"  {text}" for _, text in outcome_lines(self.record or {})]
        return "\n".join(lines)

    def _log_text(self, stage: str, text: str, flush: bool = False) -> None:
        """Whole lines of a stage's live output, prefixed by the stage (text mode)."""
        if self.widget is not None:
            return
        pending = self._partial.pop(stage, "") + text
        *lines, rest = pending.split("\n")
        if flush and rest:
            lines.append(rest)
        elif rest:
            self._partial[stage] = rest
        for line in lines:
            self._out(f"[{stage}] {line}")

    def _stage_changed(self, name: str) -> None:
        if self.widget is not None:
            return
        if self.rows[name]["status"] in FINISHED_STAGE:
            self._log_text(name, "", flush=True)
        row = self.rows[name]
        if row["status"] in ("pending", "queued") or self._printed.get(name) == row["status"]:
            return
        self._printed[name] = row["status"]
        extra = f" in {row['duration']:.2f}s" if row["status"] in FINISHED_STAGE and row["duration"] is not None else ""
        extra += f" (attempt {row['attempts']})" if row["attempts"] > 1 else ""
        self._out(f"[nb2prod] {name}: {row['status']}{extra}")
        if row["status"] == "failed" and row["error"]:
            self._out(f"[nb2prod] {name} failed: {self._error_line(row['error'])}")

    def _finish(self) -> None:
        if self.finished.is_set():
            return
        self.ended = self.ended or time.time()
        self.finished.set()
        if self.widget is not None:
            self._refresh()
            return
        for name in self.rows:
            self._stage_changed(name)
        for stage in list(self._partial):
            self._log_text(stage, "", flush=True)
        uri = (self.record or {}).get("tracking_uri")
        self._out(f"[nb2prod] run {self.run_id} {self.status} in {self._elapsed():.2f}s"
                  + (f" — MLflow run {self.mlflow_run_id}" if self.mlflow_run_id else "")
                  + (f" at {uri}" if uri else ""))
        for _, text in outcome_lines(self.record or {}):
            self._out(f"[nb2prod] {text}")

    @staticmethod
    def _error_line(error: dict[str, Any]) -> str:
        where = location(error)
        return (f"{where}: " if where else "") + f"{error.get('type')}: {error.get('message')}"

    def _elapsed(self) -> float:
        return (self.ended or time.time()) - self.started

    def _duration(self, row: dict[str, Any]) -> float | None:
        if row["duration"] is not None:
            return row["duration"]
        if row["status"] in ("running", "retrying") and row["started"]:
            return max(0.0, time.time() - row["started"])
        return None

    # -- widgets ------------------------------------------------------------------------------------
    def _build(self) -> None:
        import ipywidgets as w

        self._w = w
        self._header = w.HTML()
        self._header.add_class("nb2prod-run-header")
        self._rows: dict[str, Any] = {}
        self._body = w.VBox()
        self.widget = w.VBox([self._header, self._body])
        self.widget.add_class("nb2prod-run")
        for name in self.rows:
            self._add_row(name)
        self._refresh()

    def _add_row(self, name: str) -> None:
        w = self._w
        label = w.HTML(f"<b>{html.escape(name)}</b>", layout=w.Layout(width="11em"))
        status = w.HTML(layout=w.Layout(width="7em"))
        bar = w.IntProgress(value=0, min=0, max=2, layout=w.Layout(width="9em"))
        duration = w.HTML(layout=w.Layout(width="5em"))
        attempts = w.HTML(layout=w.Layout(width="7em"))
        line = w.HBox([label, status, bar, duration, attempts])
        line.add_class("nb2prod-stage")
        line.add_class(f"nb2prod-stage-{name}")
        detail = w.Accordion(children=[w.HTML()], layout=w.Layout(display="none"))
        detail.add_class("nb2prod-stage-error")
        self._rows[name] = {"status": status, "bar": bar, "duration": duration, "attempts": attempts,
                            "detail": detail, "shown": None}
        self._body.children = (*self._body.children, w.VBox([line, detail]))

    def _set_header(self, text: str) -> None:
        if self.widget is not None:
            self._header.value = html.escape(text)

    def _refresh(self) -> None:
        if self.widget is None:
            return
        colour = _LOOK.get(self.status, _LOOK["pending"])[2]
        link = mlflow_link({**(self.record or {}), "mlflow_run_id": self.mlflow_run_id})
        mlflow = ""
        if link:
            mlflow = (f' · <a href="{html.escape(link)}" target="_blank" rel="noopener">'
                      f"MLflow run {self.mlflow_run_id}</a>")
        elif self.mlflow_run_id:
            mlflow = f" · MLflow run <code>{self.mlflow_run_id}</code>"
        value = (f'<span class="nb2prod-run-id">run <code>{html.escape(self.run_id or "(starting)")}</code></span> '
                 f'<b class="nb2prod-run-status" data-status="{self.status}" style="color:{colour}">{self.status}</b>'
                 f' · elapsed <span class="nb2prod-elapsed">{self._elapsed():.1f}s</span>{mlflow}')
        colours = {"ok": "#2e7d32", "bad": "#c62828", "warn": "#ef6c00"}
        value += "".join(f'<br><span class="nb2prod-check" data-level="{level}" style="color:{colours[level]}">'
                         f"{html.escape(text)}</span>" for level, text in outcome_lines(self.record or {}))
        if self._header.value != value:
            self._header.value = value
        for name, row in self.rows.items():
            self._refresh_row(name, row)

    def _refresh_row(self, name: str, row: dict[str, Any]) -> None:
        parts = self._rows.get(name)
        if parts is None:
            return
        value, style, colour = _LOOK.get(row["status"], _LOOK["pending"])
        badge = (f'<span class="nb2prod-status" data-stage="{html.escape(name)}" data-status="{row["status"]}" '
                 f'style="color:{colour}">{row["status"]}</span>')
        for key, new in (("status", badge), ("duration", _seconds(self._duration(row))),
                         ("attempts", f"attempts {row['attempts']}" if row["attempts"] else "")):
            if parts[key].value != new:
                parts[key].value = new
        if (parts["bar"].value, parts["bar"].bar_style) != (value, style):
            parts["bar"].value, parts["bar"].bar_style = value, style
        shown = (repr(row["error"]), self.finished.is_set())
        if row["status"] == "failed" and row["error"] and parts["shown"] != shown:
            parts["shown"] = shown
            self._show_error(name, row["error"], parts["detail"])

    def _show_error(self, name: str, error: dict[str, Any], detail: Any) -> None:
        where = location(error) or "no cell"
        body = [f'<div class="nb2prod-error" data-stage="{html.escape(name)}" data-cell="{error.get("cell_index")}"'
                f' data-line="{error.get("line")}"><b>{html.escape(str(error.get("type")))}</b>: '
                f'{html.escape(str(error.get("message")))} <i>({html.escape(where)})</i></div>']
        if error.get("traceback"):
            body.append(f"<pre>{html.escape(error['traceback'])}</pre>")
        log = self._log(name)
        if log:
            body.append(f'<div>captured output:</div><pre class="nb2prod-log">{html.escape(log[-20000:])}</pre>')
        detail.children[0].value = "".join(body)
        detail.set_title(0, f"{name} failed — {where}")
        detail.selected_index = 0
        detail.layout.display = None

    def _log(self, name: str) -> str:
        if not (self.run_id and self.finished.is_set()):
            return ""
        from nb2prod import api

        return api.stage_log(self.run_id, name) or ""


def _timestamp(iso: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def stderr_line(text: str) -> None:
    """One line on stderr (usage errors and warnings of the magics)."""
    print(text, file=sys.stderr, flush=True)
