"""The cell-tag grammar of both dialects, and the ``%%stage`` header. One module owns it.

nb2prod dialect: ``parameters``, ``stage:NAME``, ``after:NAME``, ``setup``, ``skip``, ``metrics``,
``resources:cpu=N,gpu=N,memory=SIZE[,CUSTOM=N]``, ``gpu``, ``retries:N``, ``timeout:SECONDS``,
``nocache``, ``inputs:PATH_OR_GLOB``, ``register:VAR[=MODEL]``, ``monitor:VAR``, ``gate:METRIC OP VALUE``
(``OP`` one of ``>= > <= < ==``; no commas: nbformat forbids them in tags).

Kale dialect (read as-is): ``step:NAME``, ``block:NAME`` / bare ``step:`` or ``block:``, ``prev:NAME``,
``imports``, ``functions``, ``pipeline-parameters``, ``pipeline-metrics``, ``skip``,
``limit:nvidia.com/gpu:N``; Kale's other tags (``annotation:``, ``label:``, ``image:``, ``limit:``,
``cache:``) are accepted and ignored.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal

NAME = r"[A-Za-z0-9_-]+"
KALE_NAME = r"[_a-z][_a-z0-9]*"

STAGE_TAG = re.compile(rf"^stage:({NAME})$")
AFTER_TAG = re.compile(rf"^after:({NAME})$")
RESOURCES_TAG = re.compile(r"^resources:(.+)$")
RETRIES_TAG = re.compile(r"^retries:(\d+)$")
TIMEOUT_TAG = re.compile(r"^timeout:(\d+(?:\.\d+)?)$")
INPUTS_TAG = re.compile(r"^inputs:(.+)$")
PARAMETERS_TAG = re.compile(r"^parameters$")
INJECTED_TAG = re.compile(r"^injected-parameters$")  # an executed notebook's record of its parameters (papermill)
SETUP_TAG = re.compile(r"^setup$")
SKIP_TAG = re.compile(r"^skip$")
METRICS_TAG = re.compile(r"^metrics$")
GPU_TAG = re.compile(r"^gpu$")
NOCACHE_TAG = re.compile(r"^nocache$")
IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
MODEL_NAME = r"[A-Za-z0-9_.-]+"
REGISTER = re.compile(rf"^({IDENTIFIER})(?:=({MODEL_NAME}))?$")
REGISTER_TAG = re.compile(r"^register:(.*)$")
MONITOR_TAG = re.compile(rf"^monitor:({IDENTIFIER})$")
GATE_TAG = re.compile(r"^gate:(.+)$")
GATE = re.compile(r"^\s*([A-Za-z0-9_.\-/]+)\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
GATE_OPS = (">=", ">", "<=", "<", "==")

KALE_STEP_TAG = re.compile(rf"^step:({KALE_NAME})?$")
KALE_BLOCK_TAG = re.compile(rf"^block:({KALE_NAME})?$")
KALE_PREV_TAG = re.compile(rf"^prev:({KALE_NAME})$")
KALE_IMPORTS_TAG = re.compile(r"^imports$")
KALE_FUNCTIONS_TAG = re.compile(r"^functions$")
KALE_PARAMETERS_TAG = re.compile(r"^pipeline-parameters$")
KALE_METRICS_TAG = re.compile(r"^pipeline-metrics$")
KALE_GPU_LIMIT_TAG = re.compile(r"^limit:nvidia\.com/gpu:(\d+)$")
KALE_IGNORED_TAG = re.compile(r"^(annotation|label|image|limit|cache):.*$")

STAGE_MAGIC = re.compile(r"^\s*%%stage(\s|$)")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}

Role = Literal["code", "parameters", "injected", "setup", "skip"]
Dialect = Literal["nb2prod", "kale"]


@dataclass
class Directives:
    """What one cell's tags (or ``%%stage`` header) say."""

    role: Role = "code"
    stage: str | None = None
    stage_dialect: Dialect | None = None
    continues: bool = False  # Kale's bare ``block:``
    after: list[str] = field(default_factory=list)
    prev: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)
    retries: int | None = None
    timeout: float | None = None
    nocache: bool = False
    metrics: bool = False
    kale_metrics: bool = False
    kale_setup_order: int = 0  # imports (0) before functions (1)
    inputs: list[str] = field(default_factory=list)
    register: dict[str, str] = field(default_factory=dict)  # variable -> registered model name
    monitor: list[str] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)  # normalized METRIC OP VALUE
    problems: list[str] = field(default_factory=list)

    def merge(self, header: "Directives") -> None:
        """Add what a ``%%stage`` header says to what the cell's tags say."""
        self.stage, self.stage_dialect = header.stage, "nb2prod"
        self.after += header.after
        self.resources.update(header.resources)
        self.retries = header.retries if header.retries is not None else self.retries
        self.timeout = header.timeout if header.timeout is not None else self.timeout
        self.nocache |= header.nocache
        self.register.update(header.register)
        self.monitor += [v for v in header.monitor if v not in self.monitor]


def parse_size(text: str) -> int:
    """``"4GiB"`` → 4294967296, ``"512M"`` → 512000000, ``"1000"`` → 1000."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"invalid size {text!r} (use e.g. 512M, 4GiB)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").lower()])


def parse_resources(spec: str) -> dict[str, float]:
    """Parse ``cpu=2,gpu=1,memory=4GiB,node_type_a=1``; memory becomes bytes."""
    resources: dict[str, float] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"resources entry {item!r} is not NAME=VALUE")
        if key == "memory":
            resources[key] = parse_size(value)
        else:
            try:
                resources[key] = amount(key, float(value))
            except ValueError:
                raise ValueError(f"resources value {value!r} for {key!r} is not a number of at least 0") from None
    return resources


def amount(what: str, value: float) -> float:
    """``value`` if it is a finite number of at least 0 (CPUs, GPUs, seconds, retries), else a ValueError."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a number of at least 0, not {value:g}")
    return value


def parse_register(text: str) -> tuple[str, str]:
    """``"best_model=wine-classifier"`` → ``("best_model", "wine-classifier")``; the name defaults to VAR."""
    match = REGISTER.match(text.strip())
    if not match:
        raise ValueError("register:VAR or register:VAR=MODEL (VAR a Python name; MODEL letters, digits, '_', '.', '-')")
    return match.group(1), match.group(2) or match.group(1)


def parse_gate(text: str) -> tuple[str, str, float]:
    """``"accuracy>=0.9"`` → ``("accuracy", ">=", 0.9)``; metric names may contain dots."""
    match = GATE.match(text)
    if not match:
        raise ValueError("a gate is METRIC OP NUMBER with OP one of >= > <= < == (e.g. accuracy>=0.9)")
    return match.group(1), match.group(2), float(match.group(3))


def gate_text(metric: str, op: str, value: float) -> str:
    """The normalized form of a gate (``accuracy>=0.9``)."""
    number = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return f"{metric}{op}{number}"


def parse_tags(tags: list[str]) -> Directives:
    """Read a cell's tags (both dialects) into :class:`Directives`; bad tags land in ``problems``."""
    d = Directives()
    for tag in tags:
        tag = tag.strip()
        try:
            _apply_tag(d, tag)
        except ValueError as exc:
            d.problems.append(f"tag {tag!r}: {exc}")
    return d


def _apply_tag(d: Directives, tag: str) -> None:
    if m := STAGE_TAG.match(tag):
        _set_stage(d, m.group(1), "nb2prod")
    elif (m := KALE_STEP_TAG.match(tag)) or (m := KALE_BLOCK_TAG.match(tag)):
        if m.group(1):
            _set_stage(d, m.group(1), "kale")
        else:  # as in Kale, a bare ``step:``/``block:`` continues the previous step
            d.continues, d.stage_dialect = True, "kale"
    elif m := AFTER_TAG.match(tag):
        d.after.append(m.group(1))
    elif m := KALE_PREV_TAG.match(tag):
        d.prev.append(m.group(1))
    elif PARAMETERS_TAG.match(tag) or KALE_PARAMETERS_TAG.match(tag):
        d.role = "parameters"
    elif INJECTED_TAG.match(tag):
        d.role = "injected"
    elif SETUP_TAG.match(tag) or KALE_IMPORTS_TAG.match(tag):
        d.role = "setup"
    elif KALE_FUNCTIONS_TAG.match(tag):
        d.role, d.kale_setup_order = "setup", 1
    elif SKIP_TAG.match(tag):
        d.role = "skip"
    elif METRICS_TAG.match(tag):
        d.metrics = True
    elif KALE_METRICS_TAG.match(tag):
        d.kale_metrics = True
    elif GPU_TAG.match(tag):
        d.resources.setdefault("gpu", 1.0)
    elif m := KALE_GPU_LIMIT_TAG.match(tag):
        d.resources["gpu"] = float(m.group(1))
    elif m := RESOURCES_TAG.match(tag):
        d.resources.update(parse_resources(m.group(1)))
    elif m := RETRIES_TAG.match(tag):
        d.retries = int(m.group(1))
    elif m := TIMEOUT_TAG.match(tag):
        d.timeout = float(m.group(1))
    elif NOCACHE_TAG.match(tag):
        d.nocache = True
    elif m := INPUTS_TAG.match(tag):
        d.inputs.append(m.group(1))
    elif m := REGISTER_TAG.match(tag):
        var, name = parse_register(m.group(1))
        d.register[var] = name
    elif m := MONITOR_TAG.match(tag):
        d.monitor.append(m.group(1))
    elif m := GATE_TAG.match(tag):
        d.gates.append(gate_text(*parse_gate(m.group(1))))
    elif tag.startswith(("stage:", "after:", "retries:", "timeout:", "prev:", "step:", "block:", "monitor:")):
        raise ValueError(_malformed_hint(tag))
    elif KALE_IGNORED_TAG.match(tag):
        pass  # Kale's Kubernetes-specific tags mean nothing on Ray


def _set_stage(d: Directives, name: str, dialect: Dialect) -> None:
    if d.stage is not None and d.stage != name:
        raise ValueError(f"the cell already starts stage {d.stage!r}; a cell belongs to one stage")
    d.stage, d.stage_dialect = name, dialect


def _malformed_hint(tag: str) -> str:
    kind = tag.split(":", 1)[0]
    return {
        "stage": "stage names use letters, digits, '_' and '-' (stage:train_model)",
        "after": "after:NAME names a stage (letters, digits, '_' and '-')",
        "prev": "prev:NAME names a Kale step (lowercase letters, digits, '_')",
        "step": "Kale step names use lowercase letters, digits and '_' (step:train_model)",
        "block": "Kale step names use lowercase letters, digits and '_' (block:train_model)",
        "retries": "retries:N takes a whole number",
        "timeout": "timeout:SECONDS takes a number of seconds",
        "monitor": "monitor:VAR names a Python variable the stage binds",
    }[kind]


class _ArgParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would sys.exit(2)
        raise ValueError(message)


def stage_magic_parser() -> argparse.ArgumentParser:
    """The ``%%stage NAME [options]`` argument parser, shared by the core and the magic."""
    p = _ArgParser(prog="%%stage", add_help=False,
                   usage="%%stage NAME [--after A]... [--gpu] [--cpu N] [--memory SIZE] "
                         "[--retries N] [--timeout S] [--nocache] [--register VAR[=MODEL]]... [--monitor VAR]...")
    p.add_argument("name")
    p.add_argument("--after", action="append", default=[])
    p.add_argument("--gpu", nargs="?", const=1.0, type=float)
    p.add_argument("--cpu", type=float)
    p.add_argument("--memory")
    p.add_argument("--retries", type=int)
    p.add_argument("--timeout", type=float)
    p.add_argument("--nocache", action="store_true")
    p.add_argument("--register", action="append", default=[])
    p.add_argument("--monitor", action="append", default=[])
    return p


def parse_stage_magic(line: str) -> Directives:
    """Parse the arguments of a ``%%stage`` header line (without ``%%stage``) into Directives."""
    args = stage_magic_parser().parse_args(shlex.split(line))
    if not re.fullmatch(NAME, args.name):
        raise ValueError(f"stage name {args.name!r}: use letters, digits, '_' and '-'")
    for option in ("gpu", "cpu", "retries", "timeout"):
        if getattr(args, option) is not None:
            amount(f"--{option}", getattr(args, option))
    d = Directives(stage=args.name, stage_dialect="nb2prod", after=list(args.after),
                   retries=args.retries, timeout=args.timeout, nocache=args.nocache,
                   register=dict(parse_register(r) for r in args.register))
    for var in args.monitor:
        if not re.fullmatch(IDENTIFIER, var):
            raise ValueError(f"--monitor {var!r}: name a Python variable the stage binds")
        d.monitor.append(var)
    if args.gpu is not None:
        d.resources["gpu"] = args.gpu
    if args.cpu is not None:
        d.resources["cpu"] = args.cpu
    if args.memory is not None:
        d.resources["memory"] = parse_size(args.memory)
    return d
