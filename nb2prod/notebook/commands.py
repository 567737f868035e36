"""The ``%nb2prod`` subcommands (click; ``run`` and ``params`` take the run options declared in
:mod:`nb2prod.contracts.options`).

Each command gets the :class:`nb2prod.notebook.magics.Nb2ProdMagics` instance as ``ctx.obj`` and calls
:mod:`nb2prod.api`; errors a user can cause are raised as ``Nb2ProdError`` / click usage errors and shown
as one line by the magic.
"""

from __future__ import annotations

import html
import time
from typing import Any

import click
from IPython.display import display

from nb2prod.contracts import MASK, SUCCESSFUL
from nb2prod.contracts.options import MAGICS, click_options, from_click
from nb2prod.errors import Nb2ProdError, UsageError
from nb2prod.notebook.run_view import FINISHED_RUN, RunView, widget_frontend

_WAIT = click.option("--wait/--no-wait", default=None,
                     help="Block until the run ends (default: --no-wait in a Jupyter server kernel, else --wait).")


@click.group(name="%nb2prod", no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
def group() -> None:
    """nb2prod magics: check, run, params, pull, status, runs (`%nb2prod?` for the overview)."""


@group.command()
@click.argument("path", required=False)
@click.pass_obj
def check(magics, path: str | None) -> None:
    """The stage DAG of PATH (default: this notebook) and its validation errors."""
    from nb2prod import api
    from nb2prod.notebook.dag_view import DagView

    display(DagView(api.check(magics.notebook(path))))


@group.command()
@click.argument("path", required=False)
@click_options(MAGICS)
@_WAIT
@click.pass_obj
def run(magics, path: str | None, wait: bool | None, **kw: Any) -> None:
    """Run PATH (default: this notebook, as saved on disk) with a live view."""
    notebook = magics.notebook(path)
    options = from_click(MAGICS, kw)
    magics.warn_if_unsaved(notebook)
    magics.launch(notebook, options, wait)


@group.command()
@click.argument("path", required=False)
@click_options(MAGICS)
@_WAIT
@click.pass_obj
def params(magics, path: str | None, wait: bool | None, **kw: Any) -> None:
    """A form of PATH's parameters with a Run button (text where no widget frontend exists)."""
    from nb2prod import api
    from nb2prod.notebook.params_form import ParamsForm, params_text

    notebook = magics.notebook(path)
    options = from_click(MAGICS, kw)
    spec = api.check(notebook)
    if spec["errors"]:
        raise Nb2ProdError(f"{notebook.name} is not a valid pipeline ({len(spec['errors'])} error(s)); "
                           "see %nb2prod check")
    prepared = api.prepare(notebook, options)  # -p values checked (and typed) as a run checks them
    given = {k: prepared.shown[k] for k in prepared.overrides}  # a secret's value is the mask
    if not widget_frontend():
        print(params_text(spec["parameters"], given))
        return
    hidden = {k for k, v in given.items() if v == MASK}  # never shown: the form keeps their defaults
    inline = {k: v for k, v in options.parameters.items() if k in hidden}  # given with -p: kept as given

    def on_run(values: dict[str, Any]) -> None:
        options.parameters = {**inline, **values}  # every parameter shown, -p values pre-filled; secrets as given
        try:
            magics.warn_if_unsaved(notebook)
            magics.launch(notebook, options, wait)
        except Nb2ProdError as exc:
            form.message.value = f'<span style="color:#c62828">{html.escape(exc.message)}</span>'

    form = ParamsForm(spec["parameters"], on_run, initial={k: prepared.overrides[k] for k in given if k not in hidden})
    magics.last_form = form
    display(form)


@group.command()
@click.argument("stage")
@click.argument("names", nargs=-1)
@click.option("--run", "run_id", metavar="RUN_ID", help="Take the outputs from this run (default: the latest "
              "run of the notebook in which STAGE succeeded).")
@click.option("--path", help="The notebook (default: this notebook).")
@click.pass_obj
def pull(magics, stage: str, names: tuple[str, ...], run_id: str | None, path: str | None) -> None:
    """Load STAGE's outputs (or only NAMES) from a finished run into the notebook namespace."""
    from nb2prod import api

    if run_id is None:
        notebook = magics.notebook(path)
        runs = [r for r in api.list_runs(notebook, limit=200)
                if r["stages"].get(stage, {}).get("status") in SUCCESSFUL]
        if not runs:
            raise UsageError(f"no run of {notebook.name} has a successful stage {stage!r} yet; run it first "
                             "(or pass --run RUN_ID)")
        run_id = runs[0]["id"]
    values = api.stage_outputs(run_id, stage)
    if names:
        missing = [n for n in names if n not in values]
        if missing:
            raise UsageError(f"stage {stage!r} of run {run_id} has no output {', '.join(missing)}; "
                             f"its outputs: {', '.join(values) or '(none)'}")
        values = {n: values[n] for n in names}
    magics.shell.push(values)
    print(f"[nb2prod] pulled {', '.join(values) or 'nothing'} from stage {stage!r} of run {run_id}")


@group.command()
@click.argument("run_id", required=False)
@click.pass_obj
def status(magics, run_id: str | None) -> None:
    """A run's stages, live while it goes on (default: the last run started here, else the latest)."""
    from nb2prod import api

    if run_id is None and magics.last_run_id:
        run_id = magics.last_run_id
    if run_id is None:
        notebook = _session_or_none(magics)
        runs = api.list_runs(notebook, limit=1)
        if not runs:
            raise UsageError("no runs yet" + (f" of {notebook.name}" if notebook else ""))
        run_id = runs[0]["id"]
    record = api.get_run(run_id)
    widget = widget_frontend()
    view = RunView(list(record["stages"]), widget=widget, run_id=record["id"], out=lambda _: None)
    view.started = time.time() - (record["duration_s"] or 0)
    view.update(record)
    if not widget:
        print(view.text())
        return
    display(view)
    if record["status"] not in FINISHED_RUN:
        view.follow(record["id"], api.get_run)


@group.command()
@click.argument("path", required=False)
@click.option("--limit", default=10, show_default=True, type=click.IntRange(min=1), help="How many runs.")
@click.option("--all", "every", is_flag=True, help="Runs of every notebook.")
@click.pass_obj
def runs(magics, path: str | None, limit: int, every: bool) -> None:
    """Recent runs of PATH (default: this notebook; every notebook where none is known)."""
    from nb2prod import api

    notebook = None if every else (magics.notebook(path) if path else _session_or_none(magics))
    display(RunsTable(api.list_runs(notebook, limit=limit), notebook))


def _session_or_none(magics):
    from nb2prod.notebook.magics import session_notebook

    try:
        return session_notebook()
    except UsageError:
        return None


class RunsTable:
    """``%nb2prod runs``: an HTML table in a notebook, text lines elsewhere."""

    COLUMNS = ("run", "status", "created", "duration", "stages", "mlflow run", "origin")

    def __init__(self, records: list[dict[str, Any]], notebook) -> None:
        self.records, self.notebook = records, notebook

    def rows(self) -> list[tuple[str, ...]]:
        out = []
        for r in self.records:
            ok = sum(s["status"] in SUCCESSFUL for s in r["stages"].values())
            out.append((r["id"], r["status"], (r["created_at"] or "")[:19].replace("T", " "),
                        f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else "",
                        f"{ok}/{len(r['stages'])}", r["mlflow_run_id"] or "", r.get("origin") or ""))
        return out

    def _title(self) -> str:
        return f"runs of {self.notebook.name}" if self.notebook else "runs"

    def __repr__(self) -> str:
        if not self.records:
            return f"no {self._title()} yet"
        widths = [max(len(c), *(len(row[i]) for row in self.rows())) for i, c in enumerate(self.COLUMNS)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.COLUMNS, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in self.rows()]
        return "\n".join([self._title(), *lines])

    def _repr_html_(self) -> str:
        if not self.records:
            return f"<i>no {html.escape(self._title())} yet</i>"
        head = "".join(f"<th>{c}</th>" for c in self.COLUMNS)
        body = "".join(f'<tr data-run="{html.escape(row[0])}">' + "".join(f"<td>{html.escape(v)}</td>" for v in row)
                       + "</tr>" for row in self.rows())
        return (f'<div class="nb2prod-runs"><b>{html.escape(self._title())}</b>'
                f"<table><tr>{head}</tr>{body}</table></div>")

