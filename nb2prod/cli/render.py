"""Terminal rendering of specs and issues (rich, on stderr for diagnostics)."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nb2prod.core.spec import Issue, PipelineSpec


def _console(to_stderr: bool) -> Console:
    """A console whose tables are not cut to 80 columns when piped (rich's width without a terminal)."""
    stream = sys.stderr if to_stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else 200
    return Console(stderr=to_stderr, highlight=False, width=width)


stderr = _console(True)
stdout = _console(False)


def print_issues(errors: list[Issue], warnings: list[Issue]) -> None:
    """Errors and warnings, one line each, on stderr."""
    for w in warnings:
        stderr.print(f"[yellow]warning:[/] {w}", markup=True, soft_wrap=True)
    for e in errors:
        stderr.print(f"[red]error:[/] {e}", markup=True, soft_wrap=True)


def print_spec(spec: PipelineSpec) -> None:
    """The human form of ``nb2prod check``."""
    stdout.print(f"[bold]{spec.notebook}[/] ({spec.dialect} dialect)")
    if spec.parameters:
        table = Table("parameter", "type", "default", box=None, pad_edge=False)
        for p in spec.parameters.values():
            table.add_row(p.name, p.type, repr(p.default))
        stdout.print(table)
    table = Table("stage", "cells", "after", "inputs", "outputs", "settings", box=None, pad_edge=False)
    for s in spec.stages.values():
        settings = [f"{k}={v:g}" for k, v in s.resources.items()]
        settings += [f"retries={s.retries}"] if s.retries else []
        settings += [f"timeout={s.timeout:g}s"] if s.timeout else []
        settings += ["nocache"] if s.nocache else []
        settings += [f"register:{v}={m}" for v, m in s.register.items()] + [f"monitor:{v}" for v in s.monitor]
        table.add_row(s.name, ",".join(map(str, s.cells)), ",".join(s.upstream), ", ".join(s.inputs),
                      ", ".join(s.outputs), " ".join(settings))
    stdout.print(table)
    if spec.gates:
        stdout.print("gates: " + ", ".join(spec.gates))
    print_issues(spec.errors, spec.warnings)
    if spec.ok:
        stdout.print(f"[green]ok[/]: {len(spec.stages)} stage(s), {len(spec.edges)} edge(s)")


def check_lines(record: dict) -> list[str]:
    """A run record's outcome (:func:`nb2prod.contracts.outcome_lines`: a run-level error, gates, drift, promotion)
    as rich-markup lines, the text escaped (empty when there is none)."""
    from nb2prod.contracts import outcome_lines

    colour = {"ok": "green", "bad": "red", "warn": "yellow"}
    lines = []
    for level, text in outcome_lines(record):
        head, _, rest = text.partition(":")
        lines.append(f"[{colour[level]}]{escape(head)}[/]:{escape(rest)}")
    return lines


def print_checks(record: dict) -> None:
    """Print :func:`check_lines` on stderr."""
    for line in check_lines(record):
        stderr.print(line, markup=True, soft_wrap=True)
