"""The cache deletes only what is provably its own, writes private files, and loads pickles only from a
cache that no one else can write (no Ray needed)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from nb2prod import cache
from nb2prod.errors import Nb2ProdError, UsageError
from tests.conftest import run_cli

KEY_A, KEY_B = "a" * 64, "ab" + "c" * 62


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_clear_on_a_directory_that_is_not_a_cache_removes_nothing(tmp_path, nb2prod_home):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('precious')\n")
    (project / "notes.txt").write_text("precious\n")
    result = run_cli("cache", "clear", "--cache-dir", str(project))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not an nb2prod cache directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert (project / "src" / "main.py").read_text() == "print('precious')\n"
    assert (project / "notes.txt").exists()
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "src"]  # and nothing was written there


def test_clear_removes_entries_and_nothing_else(tmp_path):
    directory = cache.cache_dir(str(tmp_path / "c"))
    cache.write(directory, KEY_A, {"x": 1}, {"stage": "s", "run_id": "r"})
    cache.write(directory, KEY_B, {"x": 2}, {"stage": "s", "run_id": "r"})
    (directory / "ab" / "keep-me").write_text("not an entry\n")  # someone else's file inside the cache
    (directory / "ab" / ("d" * 64)).mkdir()  # entry-shaped, but under the wrong prefix
    assert cache.clear(directory) == 2
    assert cache.entries(directory) == []
    assert (directory / "ab" / "keep-me").exists() and (directory / "ab" / ("d" * 64)).is_dir()
    assert not (directory / "aa").exists()


def test_a_crafted_meta_json_cannot_make_eviction_delete_outside_the_cache(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.txt").write_text("precious\n")
    directory = cache.cache_dir(str(tmp_path / "c"))
    crafted = directory / "ee" / ("e" * 64)
    crafted.mkdir(parents=True)
    # cache/<key[:2]>/<key> with this key is cache/./../victim
    (crafted / "meta.json").write_text(json.dumps({"key": "./../victim", "size": 10**12, "last_used": 0}))
    monkeypatch.setenv("NB2PROD_CACHE_MAX_BYTES", "1000")
    cache.write(directory, KEY_A, {"x": 1}, {"stage": "s", "run_id": "r"})  # evicts beyond the bound
    assert (victim / "data.txt").read_text() == "precious\n"
    assert not crafted.exists()  # the oversized entry itself went, by its own directory


def test_a_key_is_never_a_path():
    assert cache.lookup(Path("/"), "../../etc") is None
    with pytest.raises(ValueError):
        cache.load(Path("/"), "./../etc")


def test_a_directory_with_other_files_is_not_taken_as_a_cache(tmp_path):
    (tmp_path / "home.txt").write_text("x")
    with pytest.raises(UsageError, match="not an nb2prod cache directory"):
        cache.cache_dir(str(tmp_path))
    legacy = tmp_path / "legacy"  # a cache of an nb2prod from before tags: only entries in it
    (legacy / "aa" / KEY_A).mkdir(parents=True)
    assert cache.cache_dir(str(legacy)) == legacy and (legacy / cache.TAG).exists()


def test_a_cache_another_process_is_tagging_is_taken(tmp_path):
    """Runs starting at once all create the cache: one's in-flight tag write is not a stranger to the others
    (six runs through a coordinator pool failed 'not an nb2prod cache directory … .CACHEDIR.TAG.89b72af1.tmp')."""
    fresh = tmp_path / "c"
    fresh.mkdir()
    (fresh / ".CACHEDIR.TAG.89b72af1.tmp").write_text("")
    assert cache.cache_dir(str(fresh)) == fresh and (fresh / cache.TAG).exists()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".CACHEDIR.TAG.not-hex.tmp").write_text("")  # only the exact shape write_private makes
    with pytest.raises(UsageError, match="not an nb2prod cache directory"):
        cache.cache_dir(str(tmp_path / "d"))


def test_entries_are_private_files(tmp_path):
    directory = cache.cache_dir(str(tmp_path / "c"))
    cache.write(directory, KEY_A, {"x": np.zeros(100_000)}, {"stage": "s", "run_id": "r"})  # + a buffer file
    entry = directory / "aa" / KEY_A
    assert _mode(directory) == _mode(entry.parent) == _mode(entry) == _mode(entry / "buffers") == 0o700
    files = [p for p in entry.rglob("*") if p.is_file()]
    assert len(files) == 3 and {_mode(p) for p in files} == {0o600}


@pytest.mark.parametrize("spoil", ["group-writable", "world-writable", "other-owner"])
def test_pickles_are_not_loaded_from_a_cache_others_can_write(tmp_path, spoil):
    directory = cache.cache_dir(str(tmp_path / "c"))
    cache.write(directory, KEY_A, {"x": 1}, {"stage": "s", "run_id": "r"})
    assert cache.load(directory, KEY_A) == {"x": 1}
    target = directory if spoil != "group-writable" else directory / "aa" / KEY_A
    if spoil == "other-owner":
        os.chown(target, 65534, 65534)
    else:
        os.chmod(target, 0o770 if spoil == "group-writable" else 0o777)
    with pytest.raises(Nb2ProdError, match="refusing to load cached outputs"):
        cache.load(directory, KEY_A)


def test_a_run_refuses_a_cache_others_can_write(tmp_path):
    from nb2prod.cache.plan import plan
    from nb2prod.core.builder import build_spec
    from nb2prod.contracts import RunOptions
    from tests.conftest import make_notebook

    spec = build_spec(make_notebook(tmp_path / "nb.ipynb", [("x = 1", ["stage:one"])]))
    options = RunOptions(cache_dir=str(tmp_path / "shared"))
    _, keys, _ = plan(spec, {}, options)
    cache.write(cache.cache_dir(options.cache_dir), keys["one"], {"x": 1}, {"stage": "one", "run_id": "r"})
    assert set(plan(spec, {}, options)[2]) == {"one"}
    os.chmod(tmp_path / "shared", 0o777)
    with pytest.raises(Nb2ProdError, match="writable by others"):
        plan(spec, {}, options)


@pytest.mark.parametrize("value", ["abc", "1e3", "10 GiB", "-5"])
def test_a_bound_that_is_not_a_size_in_bytes_is_a_usage_error(value, monkeypatch):
    from nb2prod.errors import UsageError

    monkeypatch.setenv("NB2PROD_CACHE_MAX_BYTES", value)
    with pytest.raises(UsageError, match="is not a size in bytes"):
        cache.max_bytes()
    result = run_cli("cache", "info", env={**os.environ, "NB2PROD_CACHE_MAX_BYTES": value})
    assert result.returncode == 2 and "is not a size in bytes" in result.stderr and "Traceback" not in result.stderr


def test_reading_a_cache_that_is_not_there_creates_nothing(tmp_path):
    missing = tmp_path / "no" / "cache"
    for command in (["cache", "info"], ["cache", "ls", "--json"]):
        result = run_cli(*command, "--cache-dir", str(missing))
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "no").exists()
