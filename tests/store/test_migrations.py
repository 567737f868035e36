"""Schema migrations: new stores are created by them, stores made by a release before migrations are upgraded
in place on first use (under a lock, by one of several processes starting together), newer or foreign
databases are refused, and the migrated schema is exactly the models'. SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from nb2prod.errors import Nb2ProdError
from tests.conftest import run_cli

LEGACY = Path(__file__).with_name("legacy")
OPEN = "from nb2prod.store import db; db.engine(); import sys; print('alembic' in sys.modules)"


def execute_script(url: str, sql: str) -> None:
    """Run SQL on the database behind ``url`` with the bare driver (not through nb2prod)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with sqlite3.connect(parsed.database) as conn:
            conn.executescript(sql)
        return
    import psycopg

    with psycopg.connect(parsed.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as conn:
        conn.execute(sql)


def fresh_engine():
    """The store as a new process sees it (the per-process engine cache cleared)."""
    from nb2prod.store import db

    db._engine.cache_clear()
    db._sessions.cache_clear()
    return db.engine()


def schema_differences(engine) -> list:
    """What the migrated schema lacks or has beyond the models (Alembic's autogenerate comparison)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import nb2prod.scheduling.models  # noqa: F401 - every table
    import nb2prod.store.models  # noqa: F401
    from nb2prod.store.db import metadata
    from nb2prod.store.migrate import VERSION_TABLE

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return [d for d in compare_metadata(context, metadata)
                if not (d[0] == "remove_table" and d[1].name == "nb2prod_meta")]


def revision(engine) -> str:
    from nb2prod.store.migrate import VERSION_TABLE

    with engine.connect() as conn:
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()


def test_a_new_store_is_made_by_the_migrations_and_is_the_models_schema(store_url):
    from nb2prod.store.migrate import head

    engine = fresh_engine()
    assert revision(engine) == head()
    assert schema_differences(engine) == []  # a model changed without a migration (or the reverse) shows here


def test_a_store_made_before_migrations_is_upgraded_in_place_with_its_data(store_url):
    from nb2prod.scheduling import schedules
    from nb2prod.store import runs
    from nb2prod.store.migrate import head

    dialect = make_url(store_url).get_backend_name()
    execute_script(store_url, (LEGACY / f"{dialect}.sql").read_text())
    engine = fresh_engine()
    assert revision(engine) == head() and schema_differences(engine) == []
    record = runs.get_run("0123456789ab")
    assert record["status"] == "done" and record["parameters"] == {"n": 200}
    assert record["stages"]["train"]["duration_s"] == 58.0
    nightly = schedules.show("nightly")
    assert nightly["fires"][0]["run_id"] == "0123456789ab" and nightly["fires"][0]["status"] == "done"
    runs.create_run("newrun000001", "/nb.ipynb", {"a": None})  # and it is writable as before
    assert [r["id"] for r in runs.list_runs()] == ["newrun000001", "0123456789ab"]
    with engine.connect() as conn:  # releases before migrations still find the version they accept
        assert conn.execute(text("SELECT value FROM nb2prod_meta WHERE key = 'schema_version'")).scalar_one() == 1


def test_processes_opening_an_old_store_together_upgrade_it_once(store_url):
    from nb2prod.store.migrate import head

    dialect = make_url(store_url).get_backend_name()
    execute_script(store_url, (LEGACY / f"{dialect}.sql").read_text())
    procs = [subprocess.Popen([sys.executable, "-c", OPEN], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outcomes]
    engine = fresh_engine()
    assert revision(engine) == head() and schema_differences(engine) == []
    from nb2prod.store import runs

    assert runs.get_run("0123456789ab")["status"] == "done"


def test_a_store_at_head_is_opened_without_loading_alembic(store_url):
    """Startup stays fast: a process finds the store current with one query and never imports Alembic."""
    fresh_engine()
    out = subprocess.run([sys.executable, "-c", OPEN], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_a_runs_whole_store_life_loads_neither_alembic_nor_the_orm(store_url):
    """Every `nb2prod run` records, updates, finishes and reads its run: the run store is SQLAlchemy Core, and the
    ORM (~0.25 s of imports) is the scheduler's alone."""
    fresh_engine()
    life = ("import sys\nfrom nb2prod.core.status import RunStatus\nfrom nb2prod.store import runs\n"
            "runs.create_run('r1', '/nb.ipynb', {'a': None, 'b': 'k'})\nruns.attach_runner('r1', 1)\n"
            "with runs.batch():\n    runs.update_stage('r1', 'a', status='done')\n"
            "    runs.add_attempt('r1', 'a', 1, 'done')\n"
            "runs.set_checks('r1', {'status': 'passed'}, None, None)\nruns.finish_run('r1', RunStatus.DONE)\n"
            "record = runs.get_run('r1')\nassert record['status'] == 'done' and record['gate']['status'] == 'passed'\n"
            "assert record['stages']['b'] == {**record['stages']['b'], 'status': 'skipped', 'cache_key': 'k'}\n"
            "print(sorted(m for m in ('alembic', 'sqlalchemy.orm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", life], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_a_store_from_a_newer_nb2prod_is_refused(store_url):
    from nb2prod.store.migrate import VERSION_TABLE

    engine = fresh_engine()
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(Nb2ProdError, match="schema revision 9999, newer than this nb2prod knows"):
        fresh_engine()
    out = run_cli("runs")
    assert out.returncode == 1 and "upgrade nb2prod" in out.stderr and "Traceback" not in out.stderr


def test_a_database_that_is_not_an_nb2prod_store_is_refused(store_url):
    execute_script(store_url, "CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY, name VARCHAR(250));")
    with pytest.raises(Nb2ProdError, match="not an nb2prod run store"):
        fresh_engine()


def test_an_unreachable_or_malformed_store_url_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NB2PROD_HOME", str(tmp_path))
    monkeypatch.setenv("NB2PROD_DATABASE_URL", "postgresql://ana:hunter2@127.0.0.1:1/team")
    out = run_cli("runs")
    assert out.returncode == 1 and "cannot open the run store postgresql+psycopg://ana:***@127.0.0.1:1/team" in \
        out.stderr and "hunter2" not in out.stderr and "Traceback" not in out.stderr
    for url, fragment in (("hunter2 is not a url", "not a database URL"),
                          ("postgresql://ana:hunter2@127.0.0.1:port/team", "not a database URL"),
                          ("mysql://ana:hunter2@127.0.0.1/team", "names a mysql database; nb2prod's store is SQLite or"),
                          ("postgresql://ana@127.0.0.1:1/team?password=hunter2", "cannot open the run store postgresql")):
        monkeypatch.setenv("NB2PROD_DATABASE_URL", url)
        out = run_cli("runs")
        assert out.returncode == 1 and fragment in out.stderr and "hunter2" not in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


@pytest.mark.slow  # the session's PostgreSQL server
def test_a_role_that_may_not_create_the_tables_is_a_clear_error(postgres, tmp_path, monkeypatch):
    import psycopg

    url = make_url(postgres.new_database())
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute("CREATE ROLE viewer LOGIN PASSWORD 'hunter2'")
    monkeypatch.setenv("NB2PROD_HOME", str(tmp_path))
    monkeypatch.setenv("NB2PROD_DATABASE_URL", url.set(username="viewer", password="hunter2").render_as_string(False))
    out = run_cli("runs")
    assert out.returncode == 1 and "cannot open the run store postgresql+psycopg://viewer:***@" in out.stderr
    assert "permission denied for schema public" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "hunter2" not in out.stderr and "CREATE TABLE" not in out.stderr


def test_the_revisions_are_one_numbered_chain():
    """``versions/NNNN_what.py`` holds revision NNNN, whose down_revision is the one before it."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from nb2prod.store.migrate import MIGRATIONS, head

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [head()]
    chain = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in chain] == [f"{i:04d}" for i in range(1, len(chain) + 1)]
    assert [r.down_revision for r in chain] == [None, *[r.revision for r in chain[:-1]]]
    assert all(Path(r.path).name.startswith(f"{r.revision}_") for r in chain)
