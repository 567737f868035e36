"""Content-addressed cache of stage outputs (keys from :mod:`nb2prod.core.cachekey`).

An entry is a directory ``<cache>/<key[:2]>/<key>/`` holding the outputs pickled with protocol 5;
large buffers (numpy arrays) are separate files that are memory-mapped on load, so reading a big
array back costs no copy. ``meta.json`` is written last (an entry without it is incomplete) and
records the stage, the run it came from, its size, metrics, captured cell outputs and last use.
The cache is bounded (``NB2PROD_CACHE_MAX_BYTES``, default 20 GiB): least recently used entries go first.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from nb2prod.contracts import SUCCESSFUL
from nb2prod.home import home_dir

DEFAULT_MAX_BYTES = 20 * 2**30
_INLINE_LIMIT = 1 << 16  # buffers smaller than this stay inside the pickle


def cache_dir(override: str | None = None) -> Path:
    """``override``, else ``NB2PROD_CACHE_DIR``, else ``$NB2PROD_HOME/cache``."""
    path = Path(override or os.environ.get("NB2PROD_CACHE_DIR") or home_dir() / "cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_bytes() -> int:
    return int(os.environ.get("NB2PROD_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES))


def _entry(directory: Path, key: str) -> Path:
    return directory / key[:2] / key


def lookup(directory: Path, key: str) -> dict[str, Any] | None:
    """The entry's metadata when ``key`` is cached (and marks it used), else None."""
    meta_path = _entry(directory, key) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    meta["last_used"] = time.time()
    _write_json(meta_path, meta)
    return meta


def write(directory: Path, key: str, outputs: dict[str, Any], meta: dict[str, Any]) -> int:
    """Store ``outputs`` under ``key`` atomically, then evict beyond the size bound; returns bytes written."""
    import cloudpickle

    final = _entry(directory, key)
    if (final / "meta.json").exists():
        return 0
    tmp = directory / f".tmp-{uuid.uuid4().hex}"
    (tmp / "buffers").mkdir(parents=True)
    buffers: list[Any] = []

    def keep(buffer) -> bool:
        view = buffer.raw()
        if view.nbytes < _INLINE_LIMIT:
            return True  # serialize in-band
        buffers.append(view)
        return False

    data = cloudpickle.dumps(outputs, protocol=5, buffer_callback=keep)
    (tmp / "outputs.pkl").write_bytes(data)
    size = len(data)
    for i, view in enumerate(buffers):
        with open(tmp / "buffers" / f"{i}.bin", "wb") as f:
            f.write(view)
        size += view.nbytes
    _write_json(tmp / "meta.json", {**meta, "key": key, "size": size, "buffers": len(buffers),
                                    "created": time.time(), "last_used": time.time()})
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError:  # another writer won the race
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    evict(directory, max_bytes())
    return size


def load(directory: Path, key: str) -> dict[str, Any]:
    """The outputs stored under ``key``; large arrays come back memory-mapped (read-only)."""
    import pickle

    entry = _entry(directory, key)
    meta = json.loads((entry / "meta.json").read_text())
    views = []
    for i in range(meta["buffers"]):
        with open(entry / "buffers" / f"{i}.bin", "rb") as f:
            size = os.fstat(f.fileno()).st_size
            views.append(memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)) if size else b"")
    return pickle.loads((entry / "outputs.pkl").read_bytes(), buffers=views)


def entries(directory: Path) -> list[dict[str, Any]]:
    """Metadata of every complete entry, most recently used first."""
    found = []
    for meta_path in directory.glob("*/*/meta.json"):
        try:
            found.append(json.loads(meta_path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda m: m.get("last_used", 0), reverse=True)


def evict(directory: Path, limit: int) -> list[str]:
    """Remove least recently used entries until the cache holds at most ``limit`` bytes."""
    kept, removed, total = entries(directory), [], 0
    for meta in kept:
        total += meta.get("size", 0)
        if total > limit:
            shutil.rmtree(_entry(directory, meta["key"]), ignore_errors=True)
            removed.append(meta["key"])
    return removed


def clear(directory: Path) -> int:
    """Remove every entry; returns how many there were."""
    count = len(entries(directory))
    for child in directory.iterdir():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
    return count


def load_stage_outputs(run_id: str, stage: str) -> dict[str, Any]:
    """The outputs a stage produced in a run (for ``%nb2prod pull`` and debugging)."""
    from nb2prod.errors import Nb2ProdError
    from nb2prod.store import runs

    record = runs.get_run(run_id)
    info = record["stages"].get(stage)
    if info is None:
        raise Nb2ProdError(f"run {record['id']} has no stage {stage!r}; its stages: {', '.join(record['stages'])}")
    if info["status"] not in SUCCESSFUL or not info.get("cache_key"):
        raise Nb2ProdError(f"stage {stage!r} of run {record['id']} is {info['status']}; only done or cached "
                           "stages have stored outputs")
    directory = cache_dir(record["options"].get("cache_dir"))
    if lookup(directory, info["cache_key"]) is None:
        raise Nb2ProdError(f"the outputs of stage {stage!r} (run {record['id']}) are no longer in the cache "
                           f"{directory} (evicted or cleared); rerun the pipeline")
    return load(directory, info["cache_key"])


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)
