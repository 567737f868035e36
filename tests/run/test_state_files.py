"""nb2prod's state is private: NB2PROD_HOME and every directory in it 0700, its files (databases, run files,
the Ray token, cached pickles) 0600, whatever the umask (no Ray needed)."""

from __future__ import annotations

import os
import stat

import pytest

from nb2prod import cache
from nb2prod.home import default_tracking_uri, home_dir, run_dir
from nb2prod.runner import cluster
from nb2prod.runner.driver import save_outputs
from nb2prod.store import runs as store


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # as an older nb2prod (or a permissive umask) left it
    monkeypatch.setenv("NB2PROD_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NB2PROD_DATABASE_URL", raising=False)
    monkeypatch.delenv("NB2PROD_CACHE_DIR", raising=False)
    previous = os.umask(0o022)
    yield home
    os.umask(previous)


def test_state_files_are_0600_in_0700_directories(fresh_home):
    run_id = store.new_run_id()
    store.create_run(run_id, "/nb.ipynb", {"s": None})  # creates the run store
    assert default_tracking_uri().endswith(str(fresh_home / "mlflow.db"))
    cluster.token_path()
    save_outputs(run_id, {"output_notebook": "{}", "stages": {"s": {"log": "hello\n"}}, "status": "done"}, None)
    cache.write(cache.cache_dir(), "f" * 64, {"x": 1}, {"stage": "s", "run_id": run_id})
    home = home_dir()
    assert home == fresh_home.resolve()
    dirs = [home, *(p for p in home.rglob("*") if p.is_dir())]
    files = [p for p in home.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"nb2prod.db", "mlflow.db", "auth_token", "output.ipynb", "s.log", "result.json", "outputs.pkl",
            "meta.json"} <= names, names
    assert {str(p.relative_to(home)): oct(stat.S_IMODE(p.stat().st_mode)) for p in dirs
            if stat.S_IMODE(p.stat().st_mode) != 0o700} == {}
    assert {str(p.relative_to(home)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
            if stat.S_IMODE(p.stat().st_mode) != 0o600} == {}
    assert run_dir(run_id).parent == home / "runs"
