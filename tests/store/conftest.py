"""Run-store fixtures: a private store per test, and a hook that runs another connection's work at an exact
point of a store function (right after one of its statements), for deterministic race interleavings."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import pytest
from sqlalchemy import event


@pytest.fixture
def store(store_url):
    """The engine of a private, empty run store: SQLite, and PostgreSQL in the slow lane (``store_url``)."""
    from nb2prod.store import db

    return db.engine()


@contextmanager
def after_statement(engine, matches: Callable[[str], bool], then: Callable[[], None]) -> Iterator[list[str]]:
    """Once this thread has executed a statement for which ``matches(sql)`` holds, run ``then`` on another thread
    (so with its own connection and transaction) to its end before this thread goes on."""
    me, fired = threading.get_ident(), []

    def hook(_conn, _cursor, statement, _params, _context, _many):
        if not fired and threading.get_ident() == me and matches(statement):
            fired.append(statement)
            errors: list[BaseException] = []
            other = threading.Thread(target=lambda: _capture(then, errors))
            other.start()
            other.join(60)
            assert not other.is_alive(), "the interleaved work did not finish"
            if errors:
                raise errors[0]

    event.listen(engine, "after_cursor_execute", hook)
    try:
        yield fired
    finally:
        event.remove(engine, "after_cursor_execute", hook)


def _capture(fn: Callable[[], None], errors: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
        errors.append(exc)
