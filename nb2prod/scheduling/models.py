"""Tables of schedules, their fire records (the audit log), each fire's attempts, and the live schedulers.

Mapped with the ORM onto the run store's :data:`~nb2prod.store.db.metadata`; created and upgraded by the run
store's migrations (``nb2prod/store/migrations/versions/``), never by these mappings: a change here needs a
migration there.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from nb2prod.store.db import metadata


class Base(DeclarativeBase):
    """Declarative base of the scheduler's tables, on the run store's metadata."""

    metadata = metadata


class ScheduleRow(Base):
    __tablename__ = "schedules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    notebook: Mapped[str] = mapped_column(Text)
    cron: Mapped[str] = mapped_column(String(128))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    mode: Mapped[str] = mapped_column(String(16), default="pipeline")
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)  # values may hold {{ scheduled_time }} templates
    options: Mapped[dict] = mapped_column(JSON, default=dict)  # RunOptions fields other than parameters
    catchup: Mapped[str] = mapped_column(String(8), default="skip")
    catchup_max: Mapped[int] = mapped_column(Integer, default=100)
    max_concurrent: Mapped[int] = mapped_column(Integer, default=1)
    timeout_s: Mapped[float | None] = mapped_column(Float)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    retry_backoff_s: Mapped[float] = mapped_column(Float, default=30.0)
    notify_url: Mapped[str | None] = mapped_column(Text)
    notify_command: Mapped[str | None] = mapped_column(Text)
    notify_on_success: Mapped[bool] = mapped_column(Boolean, default=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    considered_until: Mapped[datetime] = mapped_column(DateTime)  # fire times up to here are decided
    next_fire_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)  # so a tick reads only due rows


class FireRow(Base):
    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "scheduled_time", name="one_fire_per_time"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    scheduled_time: Mapped[datetime] = mapped_column(DateTime)  # naive UTC
    status: Mapped[str] = mapped_column(String(16), index=True)  # running|retrying|done|failed|skipped
    reason: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    run_id: Mapped[str | None] = mapped_column(String(32))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    notebook_sha256: Mapped[str | None] = mapped_column(String(64))
    parameters: Mapped[dict | None] = mapped_column(JSON)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)


class FireAttemptRow(Base):
    __tablename__ = "schedule_fire_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fire_id: Mapped[int] = mapped_column(ForeignKey("schedule_fires.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)


class SchedulerRow(Base):
    """A scheduler process or thread that is (or was) ticking this store; ``seen_at`` is its heartbeat."""

    __tablename__ = "schedulers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    seen_at: Mapped[datetime] = mapped_column(DateTime, index=True)
