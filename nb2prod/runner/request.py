"""``RunRequest``: a run as the coordinator receives it (no Ray import here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunRequest:
    """A run as the coordinator receives it: the spec plus checked, typed values."""

    run_id: str
    spec: Any  # PipelineSpec
    notebook: dict[str, Any]
    overrides: dict[str, Any]
    shown_parameters: dict[str, Any]  # every resolved value, secrets masked
    secret_values: list[str]
    env: dict[str, str]
    experiment: str
    tracking_uri: str
    tags: dict[str, str]
    log_output: bool = False
    gpu_fallback: str = "fail"
    output_path: str | None = None
    only: list[str] | None = None
    cache_dir: str | None = None
    keys: dict[str, str] = field(default_factory=dict)  # stage -> cache key
    hits: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> cache entry metadata
    runtime_env: dict[str, Any] | None = None  # stages' runtime env: only for extra packages (--pip)
    ship: Any = None  # runner.shipping.Shipment: the notebook's directory, for a cluster that may not share it
    gates: list[str] = field(default_factory=list)  # --gate, on top of the notebook's gate: tags
    promote: str | None = None  # alias to move when the gates hold
    drift_reference: str = "champion"  # champion | previous | an MLflow parent run id
    drift_threshold: float = 0.2
    fail_on_drift: bool = False
    relay_tracking: bool = False  # MLflow writes travel to the client (a client-local store; see runner/relay.py)
    relay_cache: bool = False  # the cache is the driver's: hits and new outputs travel through Ray
    cached: dict[str, Any] = field(default_factory=dict)  # stage -> object ref of its cached outputs (relay_cache)
