"""Schema migrations of the run store (Alembic, ``nb2prod/store/migrations/versions/``), applied on first use.

A process checks the store's revision once per engine (one ``SELECT``); only when it is behind does it import
Alembic, take the migration lock (SQLite: a file lock beside the database; PostgreSQL: an advisory lock held by
the migrating transaction), look again, and upgrade to the head. A store made by a release before migrations
(tables, ``nb2prod_meta``, no version table) is adopted by the baseline revision in place; a store at a
revision newer than this nb2prod's head is refused. Revisions are numbered: ``versions/NNNN_what.py`` has
``revision = "NNNN"`` and ``down_revision`` the previous number (see ARCHITECTURE.md, "Changing the schema").
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from nb2prod.errors import StoreUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "nb2prod_alembic_version"  # not alembic_version: MLflow's Alembic may share the database
LOCK_KEY = 0x6E62_3270_726F_64  # pg_advisory lock id: "nb2prod"
OUR_TABLES = ("runs", "run_stages", "stage_attempts", "schedules", "schedule_fires", "schedule_fire_attempts",
              "schedulers")


def head() -> str:
    """The newest revision this nb2prod knows: the highest ``NNNN`` of ``versions/NNNN_*.py``."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def ensure_current(engine: Engine) -> None:
    """Bring the store at ``engine`` to the head revision (a no-op costing one query when it is there)."""
    target = head()
    with engine.connect() as conn:
        if _revision(conn) == target:
            return
    with _file_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        tables = set(inspect(conn).get_table_names())
        found = _revision(conn) if VERSION_TABLE in tables else None
        if found == target:
            return  # another process migrated it while we waited for the lock
        if found is not None and found > target:
            raise StoreUnavailable(f"the run store {engine.url} is at schema revision {found}, newer than this nb2prod "
                               f"knows ({target}); upgrade nb2prod")
        if found is None and "nb2prod_meta" not in tables and tables & set(OUR_TABLES):
            raise StoreUnavailable(f"the database {engine.url} already has tables named like nb2prod's "
                               f"({', '.join(sorted(tables & set(OUR_TABLES)))}) but is not an nb2prod run store "
                               "(an MLflow database?); give NB2PROD_DATABASE_URL a database of its own")
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _revision(conn: Connection) -> str | None:
    """The store's revision; None when it has no version table (new, or made before migrations)."""
    try:
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except DBAPIError:
        conn.rollback()
        return None


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on ``<database>.migrate.lock`` for a SQLite file; nothing for a server database."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    fd = os.open(f"{database}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
