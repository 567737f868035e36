"""Engine, schema metadata and sessions of nb2prod's database (the run store).

``NB2PROD_DATABASE_URL`` selects the database: SQLite at ``$NB2PROD_HOME/nb2prod.db`` by default (0600, WAL mode, so
readers never block the runner), or a team's PostgreSQL (``postgresql+psycopg://user@host/db``; a plain
``postgresql://`` URL means the same). The schema is created and upgraded by ``nb2prod.store.migrate`` when a
process first uses the store; the tables live beside their API (``store.models``, ``scheduling.models``) and
never create anything themselves. The run store is SQLAlchemy Core (every ``nb2prod run`` opens it: the ORM would
add ~0.25 s of imports); the scheduler maps its tables with the ORM (:func:`session`).
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from nb2prod.errors import StoreUnavailable
from nb2prod.home import home_dir, private_file

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_S = 30.0
_ENGINE_LOCK = threading.Lock()


metadata = MetaData()  # every nb2prod table (runs, stages, schedules)


def database_url() -> str:
    return os.environ.get("NB2PROD_DATABASE_URL") or f"sqlite:///{private_file(home_dir() / 'nb2prod.db')}"


def _url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # the text may hold a password: never echo it
        raise StoreUnavailable("NB2PROD_DATABASE_URL is not a database URL; use e.g. "
                           "postgresql+psycopg://USER@HOST:5432/DATABASE or sqlite:////path/nb2prod.db") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreUnavailable(f"NB2PROD_DATABASE_URL names a {url.get_backend_name()} database; nb2prod's store "
                               "is SQLite or PostgreSQL (postgresql+psycopg://USER@HOST:5432/DATABASE)")
    return url


def _options(url: URL) -> dict[str, Any]:
    """Engine options per dialect."""
    if url.get_backend_name() == "postgresql":
        # long-lived servers and schedulers outlive server restarts and idle-connection reapers
        return {"pool_pre_ping": True, "pool_recycle": 1800, "pool_size": 5, "max_overflow": 10,
                "connect_args": {"application_name": "nb2prod", "connect_timeout": 10}}
    # SQLite: wait up to 30 s for another writer from the first statement on (WAL mode is set on connect)
    return {"connect_args": {"timeout": SQLITE_BUSY_S}}


@lru_cache(maxsize=8)
def _engine(raw: str) -> Engine:
    from nb2prod.store import migrate

    url = _url(raw)
    try:
        engine = create_engine(url, **_options(url))
    except (ArgumentError, ValueError, ImportError) as exc:  # a port that is no number, a driver not installed
        raise _unusable(url, str(exc) or type(exc).__name__) from None
    if url.get_backend_name() == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    try:
        migrate.ensure_current(engine)  # once per process and URL: the engine is cached
    except DBAPIError as exc:  # unreachable, refused, or a role that may not create the tables
        engine.dispose()
        raise _unusable(url, str(exc.orig).strip() if exc.orig else type(exc).__name__) from None
    except ValueError as exc:  # psycopg parsing a connection option
        engine.dispose()
        raise _unusable(url, str(exc)) from None
    return engine


def _unusable(url: URL, reason: str) -> StoreUnavailable:
    """The one error for a store that cannot be opened: the URL without its password (nor a credential in its
    query), the first line of why."""
    from nb2prod.secret import CREDENTIAL_KEYS, MASK

    query = {k: (MASK if CREDENTIAL_KEYS.search(k) else v) for k, v in url.query.items()}
    shown = url.set(query=query).render_as_string(hide_password=True)
    why = (reason.strip().splitlines() or ["no reason given"])[0]
    return StoreUnavailable(f"cannot open the run store {shown}: {why}; check NB2PROD_DATABASE_URL")


def engine() -> Engine:
    """The engine for the current ``NB2PROD_HOME`` / ``NB2PROD_DATABASE_URL``, its schema at the head revision
    (threads asking at once share one engine and one migration)."""
    with _ENGINE_LOCK:
        return _engine(database_url())


@lru_cache(maxsize=8)
def _sessions(bind: Engine) -> sessionmaker[Session]:
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(bind, expire_on_commit=False)  # one factory per engine: building one costs ~1 ms


def session() -> Session:
    """A new ORM session for the scheduler's mapped tables; use as
    ``with session() as s, s.begin(): ...``."""
    return _sessions(engine())()
