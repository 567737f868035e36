"""The pipeline spec: what ``nb2prod check --json`` prints and ``pipeline.json`` holds.

The JSON form is described by ``pipeline.schema.json`` (same directory); bump
:data:`SCHEMA_VERSION` on any incompatible change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nb2prod.errors import NotebookError

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("pipeline.schema.json")


@dataclass
class Issue:
    """A validation error or warning, pinned to a cell where one is known."""

    message: str
    cell_index: int | None = None
    cell_id: str | None = None
    stage: str | None = None

    def __str__(self) -> str:
        where = []
        if self.cell_index is not None:
            where.append(f"cell {self.cell_index}" + (f" (id {self.cell_id})" if self.cell_id else ""))
        if self.stage:
            where.append(f"stage {self.stage!r}")
        return (", ".join(where) + ": " if where else "") + self.message


@dataclass
class Parameter:
    name: str
    type: str  # int | float | bool | str | None | list | dict | any
    default: Any = None


@dataclass
class CellCode:
    """A code cell the pipeline runs: its notebook index, id and magic-free source."""

    index: int
    id: str | None
    source: str


@dataclass
class Stage:
    name: str
    cells: list[int] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)
    retries: int = 0
    timeout: float | None = None
    nocache: bool = False
    metrics: list[str] = field(default_factory=list)
    input_files: list[str] = field(default_factory=list)
    parameters_read: list[str] = field(default_factory=list)
    mutated_inputs: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)
    register: dict[str, str] = field(default_factory=dict)  # variable -> registered model name
    monitor: list[str] = field(default_factory=list)  # variables whose data profile is logged and compared


@dataclass
class PipelineSpec:
    """A notebook's pipeline: parameters, setup, stages in topological order, edges, issues."""

    notebook: str
    dialect: str = "nb2prod"
    parameters: dict[str, Parameter] = field(default_factory=dict)
    parameters_cell: int | None = None
    setup_cells: list[int] = field(default_factory=list)
    stages: dict[str, Stage] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    cells: dict[int, CellCode] = field(default_factory=dict)
    gates: list[str] = field(default_factory=list)  # from gate: tags, normalized METRIC OP VALUE

    @property
    def ok(self) -> bool:
        return not self.errors

    def downstream(self, names: list[str]) -> list[str]:
        """``names`` and every stage downstream of them, in topological order."""
        chosen = set(names)
        for stage in self.stages.values():
            if chosen & set(stage.upstream):
                chosen.add(stage.name)
        return [s for s in self.stages if s in chosen]

    def to_dict(self, include_code: bool = False) -> dict[str, Any]:
        """The versioned JSON form; ``include_code`` adds cell sources (``pipeline.json``)."""
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "notebook": self.notebook,
            "dialect": self.dialect,
            "parameters": {p.name: {"type": p.type, "default": p.default} for p in self.parameters.values()},
            "stages": {},
            "edges": [list(e) for e in self.edges],
            "warnings": [asdict(w) for w in self.warnings],
            "errors": [asdict(e) for e in self.errors],
            "gates": list(self.gates),
        }
        for stage in self.stages.values():
            entry = asdict(stage)
            del entry["name"]
            if include_code:
                entry["code"] = [asdict(self.cells[i]) for i in stage.cells]
            data["stages"][stage.name] = entry
        if include_code:
            data["parameters_cell"] = asdict(self.cells[self.parameters_cell]) if self.parameters_cell is not None else None
            data["setup"] = [asdict(self.cells[i]) for i in self.setup_cells]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelineSpec":
        """Rebuild a spec from ``pipeline.json`` (written with ``include_code=True``)."""
        if data.get("schema_version") != SCHEMA_VERSION:
            raise NotebookError(f"pipeline.json has schema_version {data.get('schema_version')!r}; "
                                f"this nb2prod reads version {SCHEMA_VERSION}. Recompile the notebook.")
        spec = cls(notebook=data["notebook"], dialect=data["dialect"])
        spec.parameters = {n: Parameter(n, p["type"], p["default"]) for n, p in data["parameters"].items()}
        spec.edges = [tuple(e) for e in data["edges"]]
        spec.warnings = [Issue(**w) for w in data["warnings"]]
        spec.errors = [Issue(**e) for e in data["errors"]]
        spec.gates = list(data.get("gates", []))
        code_cells = [c for s in data["stages"].values() for c in s.get("code", [])]
        code_cells += data.get("setup", []) + ([data["parameters_cell"]] if data.get("parameters_cell") else [])
        spec.cells = {c["index"]: CellCode(**c) for c in code_cells}
        spec.setup_cells = [c["index"] for c in data.get("setup", [])]
        if data.get("parameters_cell"):
            spec.parameters_cell = data["parameters_cell"]["index"]
        for name, s in data["stages"].items():
            fields = {k: v for k, v in s.items() if k != "code"}
            spec.stages[name] = Stage(name=name, **fields)
        return spec


def load_spec(path: str | Path) -> PipelineSpec:
    """Read a compiled ``pipeline.json``."""
    try:
        return PipelineSpec.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NotebookError(f"{path}: not a readable pipeline.json ({exc})") from None
