"""Tables of the run store: runs, their stages, every stage attempt, and each run's checks (SQLAlchemy Core, on
:data:`nb2prod.store.db.metadata`; created and upgraded by the migrations in ``nb2prod/store/migrations/versions/``:
a change here needs a migration there)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, ForeignKey, Integer, String, Table, Text

from nb2prod.store.db import metadata

runs_table = Table(
    "runs", metadata,
    Column("id", String(32), primary_key=True),
    Column("notebook", Text, nullable=False, index=True),
    Column("notebook_sha256", String(64)),
    Column("status", String(16), nullable=False, index=True),
    Column("origin", String(16), nullable=False, default="cli"),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("started_at", DateTime),
    Column("ended_at", DateTime),
    Column("heartbeat_at", DateTime),
    Column("pid", Integer),
    Column("host", String(255)),
    Column("parameters", JSON, nullable=False, default=dict),
    Column("options", JSON, nullable=False, default=dict),
    Column("mlflow_run_id", String(64), index=True),
    Column("mlflow_experiment_id", String(64)),
    Column("tracking_uri", Text),
    Column("error", JSON),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("resumed_from", String(32)),
    Column("mlflow_closed", Boolean, nullable=False, default=False),
)

stages_table = Table(
    "run_stages", metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", DateTime),
    Column("ended_at", DateTime),
    Column("duration_s", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("system_retries", Integer, nullable=False, default=0),
    Column("cached_from", String(32)),
    Column("cache_key", String(64)),
    Column("mlflow_run_id", String(64)),
    Column("error", JSON),
)

attempts_table = Table(
    "stage_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("stage", String(128), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", DateTime),
    Column("ended_at", DateTime),
    Column("node", String(64)),
    Column("error", JSON),
)

checks_table = Table(  # gate, promotion and drift outcome of a run (migration 0002)
    "run_checks", metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("gate", JSON),
    Column("promotion", JSON),
    Column("drift", JSON),
)
