"""Engine, declarative base and schema-version check for nb2prod's database.

``NB2PROD_DATABASE_URL`` selects any SQLAlchemy URL; the default is SQLite at
``$NB2PROD_HOME/nb2prod.db`` (WAL mode, so readers never block the runner).
"""

from __future__ import annotations

import os
from functools import lru_cache

from sqlalchemy import Engine, Integer, String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from nb2prod.errors import Nb2ProdError
from nb2prod.home import home_dir

SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    """Declarative base of every nb2prod table (runs, stages, schedules)."""


class Meta(Base):
    __tablename__ = "nb2prod_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


def database_url() -> str:
    return os.environ.get("NB2PROD_DATABASE_URL") or f"sqlite:///{home_dir() / 'nb2prod.db'}"


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    engine = create_engine(url)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    _ensure_schema(engine)
    return engine


def _ensure_schema(engine: Engine) -> None:
    import nb2prod.scheduling.models  # noqa: F401  (register tables)
    import nb2prod.store.models  # noqa: F401
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        row = session.scalar(select(Meta).where(Meta.key == "schema_version"))
        if row is None:
            session.add(Meta(key="schema_version", value=SCHEMA_VERSION))
        elif row.value > SCHEMA_VERSION:
            raise Nb2ProdError(f"the nb2prod database {engine.url} has schema version {row.value}, newer than "
                               f"this nb2prod understands ({SCHEMA_VERSION}); upgrade nb2prod")


def engine() -> Engine:
    """The engine for the current ``NB2PROD_HOME`` / ``NB2PROD_DATABASE_URL``."""
    return _engine(database_url())


@lru_cache(maxsize=8)
def _sessions(bind: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind, expire_on_commit=False)  # one factory per engine: building one costs ~1 ms


def session() -> Session:
    """A new ORM session; use as ``with session() as s, s.begin(): ...``."""
    return _sessions(engine())()
