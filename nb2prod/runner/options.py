"""``RunOptions``: the one set of options every front end exposes (CLI, REST, magics, scheduler)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from nb2prod.errors import UsageError

GpuFallback = Literal["fail", "cpu"]


@dataclass
class RunOptions:
    """How to run a pipeline. ``parameters`` are values (already typed), never source code."""

    parameters: dict[str, Any] = field(default_factory=dict)
    ray_address: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    output_notebook: str | None = None
    log_output: bool = False
    no_cache: bool = False
    force: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    downstream: bool = False
    resume_from: str | None = None
    gpu_fallback: GpuFallback = "fail"
    secrets: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    cache_dir: str | None = None
    pip: list[str] = field(default_factory=list)
    requirements: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
            _check_type(name, fields[name].type, value)
        if data.get("gpu_fallback", "fail") not in ("fail", "cpu"):
            raise UsageError("gpu_fallback must be 'fail' or 'cpu'")
        return cls(**data)


_TYPES = {"dict[str, Any]": dict, "str | None": (str, type(None)), "bool": bool, "list[str]": list,
          "GpuFallback": str}


def _check_type(name: str, annotation: str, value: Any) -> None:
    expected = _TYPES[annotation]
    if not isinstance(value, expected) or (annotation == "list[str]" and not all(isinstance(v, str) for v in value)):
        kind = {"dict[str, Any]": "an object", "str | None": "a string or null", "bool": "true or false",
                "list[str]": "a list of strings", "GpuFallback": "'fail' or 'cpu'"}[annotation]
        raise UsageError(f"run option {name!r} must be {kind}, got {type(value).__name__}")
