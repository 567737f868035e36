"""Magics in cell sources: which are dropped, unwrapped, or refused in a production stage.

The cleaned code keeps the original line count, so errors point at the right line of the cell.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

# Line magics that only affect interactive display or the session: dropped from stage code.
DROPPED_LINE_MAGICS = frozenset({
    "matplotlib", "config", "nb2prod", "precision", "pprint", "xmode", "who", "whos", "who_ls",
    "lsmagic", "magic", "pinfo", "pinfo2", "pdef", "pdoc", "psource", "pfile", "psearch",
    "history", "autoreload", "aimport", "colors", "page", "quickref", "notebook",
})
# Extensions whose `%load_ext` is harmless to drop.
DROPPED_EXTENSIONS = frozenset({"nb2prod", "autoreload"})
# Magics that wrap a statement: the statement is kept and run once.
UNWRAPPED_LINE_MAGICS = frozenset({"time", "timeit"})
UNWRAPPED_CELL_MAGICS = frozenset({"time", "timeit", "capture"})
# Cell magics that only render their body: the whole cell is dropped.
DISPLAY_CELL_MAGICS = frozenset({"html", "markdown", "latex", "javascript", "js", "svg"})
SHELL_MAGICS = frozenset({"pip", "conda", "mamba", "sx", "system", "sh", "bash", "script", "cd", "env",
                          "run", "writefile", "perl", "ruby", "python", "python3", "pypy", "load"})

_LINE_MAGIC = re.compile(r"^(?P<indent>\s*)(?P<assign>[\w.,\s\[\]()]+=\s*)?(?P<sigil>%{1,2}|!{1,2})(?P<name>\w*)(?P<rest>.*)$")
_HELP = re.compile(r"^\s*(\?{1,2}[\w.]+|[\w.]+\?{1,2})\s*$")
_CELL_MAGIC = re.compile(r"^%%(?P<name>\w+)(?P<rest>.*)$")


@dataclass
class CleanSource:
    """A cell's Python code with magics handled, plus any ``%%stage`` header and errors."""

    code: str
    stage_header: str | None = None
    errors: list[str] = field(default_factory=list)


# What ``ast.parse`` raises for source it cannot parse: bad syntax, and nesting too deep for its stack.
UNPARSABLE = (SyntaxError, ValueError, RecursionError, MemoryError)


def clean_source(source: str) -> CleanSource:
    """Handle the magics of one cell. Pure Python cells are returned unchanged (fast path)."""
    try:
        ast.parse(source)
        return CleanSource(source)
    except UNPARSABLE:
        pass
    lines = source.split("\n")
    result = CleanSource("")
    cell = _CELL_MAGIC.match(lines[0]) if lines else None
    if cell:
        name, rest = cell.group("name"), cell.group("rest").strip()
        if name == "stage":
            result.stage_header = rest
            lines[0] = ""
        elif name in UNWRAPPED_CELL_MAGICS:
            lines[0] = ""
        elif name in DISPLAY_CELL_MAGICS:
            result.code = "\n" * (len(lines) - 1)
            return result
        else:
            result.errors.append(_refusal(f"%%{name}", name in SHELL_MAGICS, 1))
            result.code = "\n" * (len(lines) - 1)
            return result
    for i, line in enumerate(lines):
        lines[i] = _clean_line(line, i + 1, result.errors)
    result.code = "\n".join(lines)
    if not result.errors:
        try:
            ast.parse(result.code)
        except SyntaxError as exc:
            result.errors.append(f"line {exc.lineno}: syntax error: {exc.msg}")
        except UNPARSABLE:
            result.errors.append("the cell cannot be parsed: it is nested too deeply or holds a NUL character")
    return result


def _clean_line(line: str, lineno: int, errors: list[str]) -> str:
    if _HELP.match(line):
        return _blank(line)
    m = _LINE_MAGIC.match(line)
    if not m or m.group("sigil").startswith("%%"):
        return line
    indent, sigil, name, rest = m.group("indent"), m.group("sigil"), m.group("name"), m.group("rest")
    if sigil.startswith("!"):
        errors.append(_refusal(f"!{name}{rest}".strip(), True, lineno))
        return _blank(line)
    if m.group("assign"):
        errors.append(_refusal(f"%{name}", name in SHELL_MAGICS, lineno))
        return _blank(line)
    if name in UNWRAPPED_LINE_MAGICS:
        return indent + rest.strip()
    if name in DROPPED_LINE_MAGICS or (name == "load_ext" and rest.strip() in DROPPED_EXTENSIONS):
        return _blank(line)
    errors.append(_refusal(f"%{name}{rest}".strip(), name in SHELL_MAGICS, lineno))
    return _blank(line)


def _blank(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    return f"{indent}pass" if indent else ""


def _refusal(what: str, shell: bool, lineno: int) -> str:
    if shell:
        return (f"line {lineno}: `{what}` runs a shell command; a production stage never shells out. "
                "Install packages in the environment (or express the step in Python in a `setup` cell), "
                "or tag the cell `skip`.")
    return (f"line {lineno}: the magic `{what}` cannot run outside IPython. Rewrite it as Python, "
            "or tag the cell `skip`.")
