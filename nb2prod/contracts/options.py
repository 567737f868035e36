"""``RunOptions``: the one declaration of how a pipeline runs.

Every front end derives its options from the field metadata here: the CLI (``run``, ``resume``,
``schedule add``) and the ``%nb2prod run``/``params`` magics through :func:`click_options`, the REST
server through :meth:`RunOptions.from_dict`, the TypeScript ``IRunRequest`` through
:func:`typescript_fields` (checked by a test). Add an option by adding one field with :func:`option`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

from nb2prod.errors import UsageError

GpuFallback = Literal["fail", "cpu"]
# The front ends that expose an option ("rest" takes every field).
RUN, MAGICS, RESUME, SCHEDULE = "run", "magics", "resume", "schedule"
EVERYWHERE = frozenset({RUN, MAGICS, RESUME, SCHEDULE})
NEW_RUN = frozenset({RUN, MAGICS, SCHEDULE})  # options a resumed run keeps from the run it resumes
LINE_BREAK = re.compile(r"[\r\n\0]")  # one option value is one line: never a second pip or shell line
# JSON kind of a field -> (python check, wording in errors, TypeScript type)
_KINDS: dict[str, tuple[type | tuple[type, ...], str, str]] = {
    "object": (dict, "an object", "Record<string, unknown>"),
    "string": ((str, type(None)), "a one-line string or null", "string | null"),
    "bool": (bool, "true or false", "boolean"),
    "strings": (list, "a list of one-line strings", "string[]"),
    "choice": (str, "{choices}", "{choices}"),
    "number": ((int, float), "a finite number", "number"),
}


def option(default: Any = None, *, help: str, kind: str, flags: tuple[str, ...] = (), fronts=EVERYWHERE,
           metavar: str | None = None, choices: tuple[str, ...] = (), path: str | None = None) -> Any:
    """A ``RunOptions`` field and its metadata: ``help`` text, JSON ``kind``, click ``flags`` (empty: not on
    the command line), the ``fronts`` that expose it, and ``path`` ("file", "input" = a file that must exist,
    "dir") for options naming files (confined to the server root by the REST server)."""
    meta = {"help": help, "kind": kind, "flags": flags, "fronts": frozenset(fronts), "metavar": metavar,
            "choices": choices, "path": path}
    if kind in ("object", "strings"):
        return dataclasses.field(default_factory=dict if kind == "object" else list, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# papermill's parameter flags, all folded into ``RunOptions.parameters`` (precedence: -f < -y < -p < -r).
PARAMETER_FLAGS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("-p", "--parameter", "params"), {"nargs": 2, "multiple": True, "metavar": "NAME VALUE",
                                       "help": "Parameter, type inferred like papermill (True/False/None/int/float/str)."}),
    (("-r", "--raw", "raw"), {"nargs": 2, "multiple": True, "metavar": "NAME VALUE",
                              "help": "Parameter kept as a string."}),
    (("-f", "--parameters-file", "files"), {"multiple": True, "path": "input", "help": "YAML file of parameters."}),
    (("-y", "--parameters-yaml", "yamls"), {"multiple": True, "help": "YAML string of parameters."}),
]


@dataclass
class RunOptions:
    """How to run a pipeline. ``parameters`` are values (already typed), never source code."""

    parameters: dict[str, Any] = option(kind="object", fronts=NEW_RUN, help="Parameter values (-p/-r/-f/-y).")
    ray_address: str | None = option(
        kind="string", flags=("--ray-address",),
        help="Ray cluster address (default: RAY_ADDRESS, else nb2prod's local cluster).")
    tracking_uri: str | None = option(
        kind="string", flags=("--tracking-uri",), fronts=NEW_RUN,
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else under NB2PROD_HOME).")
    experiment: str | None = option(kind="string", flags=("--experiment",), fronts=NEW_RUN,
                                    help="MLflow experiment (default: the notebook's file stem).")
    output_notebook: str | None = option(kind="string", flags=("--output-notebook",), path="file",
                                         help="Also write the executed notebook here.")
    log_output: bool = option(False, kind="bool", flags=("--log-output",),
                              help="Stream stage stdout/stderr live, prefixed by stage.")
    no_cache: bool = option(False, kind="bool", flags=("--no-cache",), fronts=NEW_RUN,
                            help="Read nothing from the stage cache.")
    force: list[str] = option(kind="strings", flags=("--force",), metavar="STAGE", fronts=NEW_RUN,
                              help="Rerun STAGE and its downstream.")
    stages: list[str] = option(kind="strings", flags=("--stage",), metavar="STAGE", fronts=NEW_RUN,
                               help="Run only STAGE (repeatable).")
    downstream: bool = option(False, kind="bool", flags=("--downstream",), fronts=NEW_RUN,
                              help="With --stage: also everything downstream of it.")
    resume_from: str | None = option(kind="string", flags=("--resume",), metavar="RUN_ID", fronts={RUN},
                                     help="Resume that run: rerun its failed and unrun stages.")
    gpu_fallback: GpuFallback = option("fail", kind="choice", flags=("--gpu-fallback",), choices=("fail", "cpu"),
                                       help="What a gpu stage does on a cluster without GPUs.")
    secrets: list[str] = option(kind="strings", flags=("--secret",), metavar="NAME[=ENV_VAR]", fronts=NEW_RUN,
                                help="Secret parameter, its value stored and shown nowhere: NAME takes its -p "
                                     "value; NAME=ENV_VAR reads ENV_VAR when each run starts (schedules: each fire).")
    env: list[str] = option(kind="strings", flags=("--env",), metavar="NAME",
                            help="Environment variable passed to stages, never recorded.")
    cache_dir: str | None = option(kind="string", flags=("--cache-dir",), path="dir", fronts=NEW_RUN,
                                   help="Stage cache directory (default: NB2PROD_CACHE_DIR, else under NB2PROD_HOME).")
    pip: list[str] = option(kind="strings", flags=("--pip",), metavar="PKG",
                            help="Extra package for the stages' Ray runtime env.")
    requirements: str | None = option(kind="string", flags=("--requirements",), path="input",
                                      help="requirements.txt for the stages' runtime env.")
    gates: list[str] = option(kind="strings", flags=("--gate",), metavar="METRIC>=VALUE", fronts=NEW_RUN,
                              help="Promotion gate on a metric of the run (>= > <= < ==; repeatable; adds to the "
                                   "notebook's gate: tags).")
    promote: str | None = option(kind="string", flags=("--promote",), metavar="ALIAS", fronts=NEW_RUN,
                                 help="Move model alias ALIAS to the run's new model versions if every gate holds.")
    drift_reference: str = option("champion", kind="string", flags=("--drift-reference",), fronts=NEW_RUN,
                                  metavar="champion|previous|RUN_ID",
                                  help="Run whose monitor: profiles the data is compared with (default champion: "
                                       "the run of the promoted alias's holder, else the previous successful run).")
    drift_threshold: float = option(0.2, kind="number", flags=("--drift-threshold",), fronts=NEW_RUN,
                                    help="PSI above which a monitored column has drifted (default 0.2).")
    fail_on_drift: bool = option(False, kind="bool", flags=("--fail-on-drift",), fronts=NEW_RUN,
                                 help="On drift, skip the stages consuming the drifted data and fail the run.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def non_defaults(self) -> dict[str, Any]:
        """The fields set to something other than their default (what a user chose)."""
        defaults = RunOptions().to_dict()
        return {k: v for k, v in self.to_dict().items() if v != defaults[k]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunOptions":
        """Build options from JSON-like data; unknown fields and wrong types are a UsageError."""
        if not isinstance(data, dict):
            raise UsageError("run options must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise UsageError(f"unknown run option(s): {', '.join(unknown)}; known: {', '.join(fields)}")
        for name, value in data.items():
            _check(name, fields[name].metadata, value)
        return cls(**data)


def _check(name: str, meta, value: Any) -> None:
    expected, wording, _ = _KINDS[meta["kind"]]
    choices = meta["choices"]
    ok = isinstance(value, expected)
    if ok and meta["kind"] == "number":
        ok = not isinstance(value, bool) and math.isfinite(value)
    if ok and meta["kind"] == "string":
        ok = value is None or not LINE_BREAK.search(value)
    if ok and meta["kind"] == "strings":
        ok = all(isinstance(v, str) and not LINE_BREAK.search(v) for v in value)
    if ok and choices:
        ok = value in choices
    if not ok:
        wording = wording.format(choices=" or ".join(repr(c) for c in choices))
        got = repr(value)[:80] if meta["kind"] == "choice" and isinstance(value, str) else type(value).__name__
        raise UsageError(f"run option {name!r} must be {wording}, got {got}")


def fields_for(front: str) -> list[dataclasses.Field]:
    """The ``RunOptions`` fields that front end ``front`` exposes, in declaration order."""
    return [f for f in dataclasses.fields(RunOptions) if front in f.metadata["fronts"]]


def path_fields() -> dict[str, str]:
    """``{field: "file" | "input" | "dir"}`` for the options that name files."""
    return {f.name: f.metadata["path"] for f in dataclasses.fields(RunOptions) if f.metadata["path"]}


def typescript_fields() -> dict[str, str]:
    """``{field: TypeScript type}``: what ``IRunRequest`` in ``labextension/src/types.ts`` must declare."""
    out = {}
    for f in dataclasses.fields(RunOptions):
        ts = _KINDS[f.metadata["kind"]][2]
        out[f.name] = ts.format(choices=" | ".join(f"'{c}'" for c in f.metadata["choices"]))
    return out


def click_options(front: str) -> Callable[[Callable], Callable]:
    """A decorator adding ``front``'s options as click options (their values: see :func:`from_click`)."""
    import click

    def path_type(kind: str | None):
        if kind == "dir":
            return click.Path(file_okay=False)
        return click.Path(dir_okay=False) if kind else None

    decorators = []
    if "parameters" in {f.name for f in fields_for(front)}:
        for decls, kw in PARAMETER_FLAGS:
            kw = dict(kw)
            decorators.append(click.option(*decls, type=path_type(kw.pop("path", None)), **kw))
    for f in fields_for(front):
        meta = f.metadata
        if not meta["flags"]:
            continue
        kw: dict[str, Any] = {"help": meta["help"], "metavar": meta["metavar"]}
        if meta["kind"] == "bool":
            kw["is_flag"] = True
        elif meta["kind"] == "strings":
            kw["multiple"] = True
        elif meta["kind"] == "choice":
            kw.update(type=click.Choice(meta["choices"]), default=f.default, show_default=True)
        elif meta["kind"] == "number":
            kw.update(type=float, default=f.default, show_default=True)
        elif f.default is not None:
            kw.update(default=f.default, show_default=True)
        elif meta["path"]:
            kw["type"] = path_type(meta["path"])
        decorators.append(click.option(*meta["flags"], f.name, **kw))

    def decorate(fn: Callable) -> Callable:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return decorate


def from_click(front: str, kw: dict[str, Any], typed: bool = True) -> RunOptions:
    """``RunOptions`` from the keyword arguments of :func:`click_options` (``front``'s fields; the others keep
    their defaults). ``typed=False`` keeps ``-p`` values as text (a schedule types them at each fire)."""
    from nb2prod.core.params import collect_parameters

    values: dict[str, Any] = {}
    for f in fields_for(front):
        if f.name == "parameters":
            params, raw = list(kw.pop("params")), list(kw.pop("raw"))
            if not typed:
                params, raw = [], params + raw
            values["parameters"] = collect_parameters(params, raw, kw.pop("files"), kw.pop("yamls"))
        elif f.metadata["flags"]:
            value = kw.pop(f.name)
            values[f.name] = list(value) if f.metadata["kind"] == "strings" else value
    return RunOptions.from_dict(values)
