"""Tables of the run store: runs, their stages, and every stage attempt (created and upgraded by the
migrations in ``nb2prod/store/migrations/versions/``: a change here needs a migration there)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nb2prod.store.db import Base


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    notebook: Mapped[str] = mapped_column(Text, index=True)
    notebook_sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    origin: Mapped[str] = mapped_column(String(16), default="cli")
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    tracking_uri: Mapped[str | None] = mapped_column(Text)
    error: Mapped[dict | None] = mapped_column(JSON)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    resumed_from: Mapped[str | None] = mapped_column(String(32))
    mlflow_closed: Mapped[bool] = mapped_column(Boolean, default=False)


class StageRow(Base):
    __tablename__ = "run_stages"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    system_retries: Mapped[int] = mapped_column(Integer, default=0)
    cached_from: Mapped[str | None] = mapped_column(String(32))
    cache_key: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[dict | None] = mapped_column(JSON)


class AttemptRow(Base):
    __tablename__ = "stage_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    node: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[dict | None] = mapped_column(JSON)


class RunCheckRow(Base):
    """Gate, promotion and drift outcome of a run (migration 0002)."""

    __tablename__ = "run_checks"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    gate: Mapped[dict | None] = mapped_column(JSON)
    promotion: Mapped[dict | None] = mapped_column(JSON)
    drift: Mapped[dict | None] = mapped_column(JSON)
