"""IPython magics: ``%%stage`` and ``%nb2prod check|run|params|pull|status|runs`` (``%load_ext nb2prod``).

A front end over :mod:`nb2prod.api`: no pipeline logic here. ``%%stage``'s grammar is the core's
(:func:`nb2prod.core.grammar.parse_stage_magic`); ``%nb2prod run``'s options are the CLI's
(:func:`nb2prod.cli.run.run_options`). An error fails the cell, as IPython's own magics do, and shows one line,
never a traceback: a usage error as IPython's ``UsageError``, any other as ``error: ...`` (:class:`MagicError`);
so does a run started with ``--wait`` that did not succeed, so that papermill or "Run All" stop there.
"""

from __future__ import annotations

import ast
import os
import shlex
import time
from pathlib import Path
from typing import Any

import click
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display

from nb2prod.core.builder import real_path
from nb2prod.errors import Nb2ProdError, UsageError
from nb2prod.notebook.run_view import RunView, stderr_line, widget_frontend

HELP = """nb2prod magics — productionize this notebook without leaving it.

%%stage NAME [--after A]... [--gpu [N]] [--cpu N] [--memory SIZE] [--retries N] [--timeout S] [--nocache]
       [--register VAR[=MODEL]]... [--monitor VAR]...
    Marks the cell as the start of pipeline stage NAME. Interactively the body just runs.

%nb2prod check [PATH]
    The stage DAG (stages, edges and the variables along them) and any validation errors with cell numbers.
%nb2prod run [PATH] [-p NAME VALUE]... [--stage NAME [--downstream]] [--wait/--no-wait] [run options]
    Runs the notebook as saved on disk, with a live view. Every option of `nb2prod run` works
    (-r, -f, -y, --ray-address, --tracking-uri, --experiment, --no-cache, --force, --secret, --env,
    --gate, --promote, --fail-on-drift, ...).
    --stage runs one stage, its inputs taken from the latest successful run of this notebook.
    Default --no-wait in a Jupyter server kernel (JPY_SESSION_NAME set), --wait elsewhere.
%nb2prod params [PATH] [run options]
    A form of the parameters (typed, defaults filled in) with a Run button.
%nb2prod pull STAGE [NAMES]... [--run RUN_ID] [--path PATH]
    Loads a stage's outputs from a finished run (default: the latest successful one) into this namespace.
%nb2prod status [RUN_ID]
    A run's stages (default: the last run started here, else the notebook's latest run).
%nb2prod runs [PATH] [--limit N]
    Recent runs of this notebook with their MLflow run ids.

PATH defaults to the current notebook (JPY_SESSION_NAME, set by Jupyter servers); under papermill, nbclient
and terminal IPython pass it. Live views use ipywidgets where a widget frontend exists, plain text lines
elsewhere (NB2PROD_WIDGETS=1|0 overrides). `%nb2prod COMMAND --help` shows a command's options.
"""


@magics_class
class Nb2ProdMagics(Magics):
    """The ``%%stage`` and ``%nb2prod`` magics."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.last_executed: float | None = None
        self.last_view: RunView | None = None
        self.last_run_id: str | None = None
        self.last_form: Any = None

    def executed(self, *_: Any) -> None:
        """``post_run_cell`` hook: when this kernel last finished running a cell."""
        self.last_executed = time.time()

    # -- %%stage ------------------------------------------------------------------------------------
    @cell_magic
    def stage(self, line: str, cell: str) -> Any:
        """%%stage NAME [--after A]... [--gpu [N]] [--cpu N] [--memory SIZE] [--retries N] [--timeout S] [--nocache]
       [--register VAR[=MODEL]]... [--monitor VAR]...

        Starts pipeline stage NAME (the pipeline parser reads this header); interactively the cell body
        runs in the notebook's namespace as usual.
        """
        __tracebackhide__ = True  # noqa: F841 - errors in the body show as the body's own
        from nb2prod.core.grammar import parse_stage_magic

        try:
            parse_stage_magic(line)
        except ValueError as exc:
            raise IPythonUsageError(f"%%stage {line.strip()}: {exc}") from None
        code = self.shell.transform_cell(cell)
        filename = self.shell.compile.cache(code, self.shell.execution_count, raw_code=cell)
        tree = ast.parse(code, filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        namespace = self.shell.user_ns
        exec(self.shell.compile(tree, filename, "exec"), namespace)  # noqa: S102 - the user's own cell
        if last is not None:
            return eval(self.shell.compile(last, filename, "eval"), namespace)  # noqa: S307
        return None

    # -- %nb2prod -----------------------------------------------------------------------------------
    @line_magic
    def nb2prod(self, line: str) -> None:
        __tracebackhide__ = True  # noqa: F841
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise IPythonUsageError(f"%nb2prod: {exc}") from None
        if not argv:
            print(HELP)
            return
        group = commands()
        try:
            group.main(args=argv, prog_name="%nb2prod", standalone_mode=False, obj=self)
        except click.ClickException as exc:
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else "%nb2prod"
            if where == "%nb2prod" and argv[0] in group.commands:  # an error parsing the command's own options
                where = f"%nb2prod {argv[0]}"
            raise IPythonUsageError(f"{where}: {exc.format_message()}") from None
        except UsageError as exc:
            raise IPythonUsageError(f"%nb2prod {argv[0]}: {exc.message}") from None
        except Nb2ProdError as exc:
            raise MagicError(exc.message) from None
        except click.Abort:
            raise MagicError("interrupted") from None

    nb2prod.__doc__ = HELP

    # -- helpers the commands use -------------------------------------------------------------------
    def notebook(self, path: str | None) -> Path:
        """PATH, else the kernel's own notebook (``JPY_SESSION_NAME``)."""
        if path:
            return real_path(Path(path).expanduser())
        session = session_notebook()
        if session is None:
            raise UsageError("no notebook PATH given and this kernel does not know its notebook "
                             "(JPY_SESSION_NAME is not set, as under papermill, nbclient or terminal IPython); "
                             "pass PATH")
        return session

    def warn_if_unsaved(self, path: Path) -> None:
        """Warn when the kernel's own notebook on disk is older than its last executed cell."""
        try:
            own = session_notebook()
        except UsageError:
            return
        if path != own or self.last_executed is None or not path.is_file():
            return
        if path.stat().st_mtime < self.last_executed:
            stderr_line(f"warning: {path.name} on disk is older than this kernel's last execution; unsaved "
                        "edits are not part of the run (save the notebook first)")

    def launch(self, path: Path, options: Any, wait: bool | None) -> RunView:
        """Start a run with a live view: in the background (follow the run store) or in the foreground."""
        from nb2prod import api

        widget = widget_frontend()
        if wait is None:
            wait = not os.environ.get("JPY_SESSION_NAME")
        if not wait:
            run_id = api.start_run(path, options, origin="magics")
            view = RunView(list(api.get_run(run_id)["stages"]), widget=widget, run_id=run_id)
            self.last_view, self.last_run_id = view, run_id
            if widget:
                display(view)
                view.follow(run_id, api.get_run)
            else:
                print(f"[nb2prod] run {run_id} started in the background; `%nb2prod status {run_id}` shows it")
            return view
        stages = list(api.prepare(path, options).spec.stages)
        run_id = api.new_run_id()
        view = RunView(stages, widget=widget, run_id=run_id)
        self.last_view, self.last_run_id = view, run_id
        if widget:
            display(view)
            view.tick()
        else:
            print(f"[nb2prod] run {run_id}: {len(stages)} stage(s) of {path.name}", flush=True)
        try:
            record = api.run(path, options, run_id=run_id, origin="magics", observer=view)
        except BaseException:
            view.finished.set()  # stops the ticker
            raise
        view.done(record)
        failure = run_failure(record)
        if failure:
            raise MagicError(failure)
        return view


class MagicError(Exception):
    """An error of an nb2prod magic: the cell fails and shows ``error: MESSAGE``, not a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return [f"error: {self}"]


def run_failure(record: dict[str, Any]) -> str | None:
    """Why a finished run did not succeed (its status and first error, or its failed gate); None if it did."""
    from nb2prod.contracts import succeeded

    if succeeded(record):
        return None
    error = record.get("error") or {}
    if record["status"] == "done":
        why = f"gate failed: {(record.get('gate') or {}).get('reason')}"
    elif error:
        where = f"stage {error['stage']!r}: " if error.get("stage") else ""
        why = f"{where}{error.get('type')}: {error.get('message')}"
    else:
        return f"run {record['id']} {record['status']}"
    return f"run {record['id']} {record['status']}: {why}"


def session_notebook() -> Path | None:
    """The notebook a Jupyter server started this kernel for, if it is on disk."""
    session = os.environ.get("JPY_SESSION_NAME")
    if not session:
        return None
    p = Path(session).expanduser()
    for candidate in ([p] if p.is_absolute() else [Path.cwd() / p, Path.cwd() / p.name]):
        if candidate.is_file():
            return candidate.resolve()
    raise UsageError(f"this kernel's notebook {session!r} is not on disk (not saved yet, or renamed since the "
                     "kernel started); save it, or pass PATH")


_COMMANDS: click.Group | None = None


def commands() -> click.Group:
    """The ``%nb2prod`` subcommands (click, sharing ``nb2prod run``'s options)."""
    global _COMMANDS
    if _COMMANDS is None:
        from nb2prod.notebook.commands import group

        _COMMANDS = group
    return _COMMANDS


_LOADED: dict[int, Nb2ProdMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nb2prod`` (or ``nb2prod.notebook.magics``): registers the magics."""
    if id(ipython) in _LOADED:
        return
    magics = Nb2ProdMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("post_run_cell", magics.executed)
    _LOADED[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    magics = _LOADED.pop(id(ipython), None)
    if magics is not None:
        ipython.events.unregister("post_run_cell", magics.executed)


def last_view() -> RunView | None:
    """The live view of the last run started from this kernel (``.wait()``, ``.record``)."""
    return next(iter(_LOADED.values())).last_view if _LOADED else None


__all__ = ["Nb2ProdMagics", "load_ipython_extension", "unload_ipython_extension", "last_view"]
