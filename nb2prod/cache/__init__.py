"""Content-addressed cache of stage outputs (keys from :mod:`nb2prod.core.cachekey`).

An entry is a directory ``<cache>/<key[:2]>/<key>/`` holding the outputs pickled with protocol 5;
large buffers (numpy arrays) are separate files that are memory-mapped on load, so reading a big
array back costs no copy. ``meta.json`` is written last (an entry without it is incomplete) and
records the stage, the run it came from, its size, metrics, captured cell outputs and last use.
The cache is bounded (``NB2PROD_CACHE_MAX_BYTES``, default 20 GiB): least recently used entries go first.

Deleting is confined to what is provably the cache: a directory nb2prod tagged (``CACHEDIR.TAG``, written
when it created the directory or found it empty), and in it only entries of the right name shape. Pickles
are loaded only from a cache owned by this user that no one else can write.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import shutil
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from nb2prod.contracts import SUCCESSFUL
from nb2prod.errors import Nb2ProdError, UsageError
from nb2prod.home import PROBE, home_dir, private_dir, write_private

DEFAULT_MAX_BYTES = 20 * 2**30
_INLINE_LIMIT = 1 << 16  # buffers smaller than this stay inside the pickle
TAG = "CACHEDIR.TAG"  # https://bford.info/cachedir/
_TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
             "# This file is a cache directory tag created by nb2prod (its stage-output cache).\n")
_KEY = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(r"[0-9a-f]{2}")
_TMP = re.compile(r"\.tmp-[0-9a-f]{32}")
_TAG_TMP = re.compile(r"\.CACHEDIR\.TAG\.[0-9a-f]{8}\.tmp")  # another process writing the tag (write_private)


def cache_dir(override: str | None = None, create: bool = True) -> Path:
    """``override``, else ``NB2PROD_CACHE_DIR``, else ``$NB2PROD_HOME/cache``; created 0700 and tagged (unless
    ``create`` is false and there is none: what only reads it creates nothing).

    An existing directory is used only when nb2prod tagged it, or it is empty, or it holds nothing but cache
    entries (a cache of an nb2prod from before tags); anything else is a UsageError, so that a mistyped
    ``--cache-dir`` never gets cache entries written into it, nor deleted from it.
    """
    path = Path(override or os.environ.get("NB2PROD_CACHE_DIR") or home_dir() / "cache").expanduser().absolute()
    if not create and not path.exists():
        return path
    if path.is_dir() and not _tagged(path):
        strangers = sorted(c.name for c in path.iterdir() if not _cache_shaped(c))
        if strangers:
            raise UsageError(f"{path} is not an nb2prod cache directory (no {TAG} written by nb2prod, and it holds "
                             f"other files: {', '.join(strangers[:3])}{' …' if len(strangers) > 3 else ''}); "
                             "give a new or empty directory as the cache")
    try:
        if not path.is_dir():  # an existing one keeps its mode: a cache others could write is refused, not hidden
            private_dir(path)
        if not _tagged(path):
            write_private(path / TAG, _TAG_TEXT)
    except OSError as exc:
        raise UsageError(f"cannot use {path} as the cache directory: {exc.strerror or exc}") from None
    return path


def max_bytes() -> int:
    """The cache's size bound: ``NB2PROD_CACHE_MAX_BYTES`` (bytes), else 20 GiB."""
    value = os.environ.get("NB2PROD_CACHE_MAX_BYTES")
    if value is None:
        return DEFAULT_MAX_BYTES
    try:
        bound = int(value)
    except ValueError:
        bound = -1
    if bound < 0:
        raise UsageError(f"NB2PROD_CACHE_MAX_BYTES={value!r} is not a size in bytes (a whole number, 0 or more, "
                         "e.g. 10737418240 for 10 GiB)")
    return bound


def check_private(directory: Path) -> None:
    """Raise unless ``directory`` belongs to this user and no one else can write it (its pickles are loaded)."""
    try:
        st = directory.stat()
    except OSError as exc:
        raise Nb2ProdError(f"cannot read the cache {directory}: {exc.strerror or exc}") from None
    if st.st_uid != os.geteuid():
        raise Nb2ProdError(f"refusing to load cached outputs from {directory}: it belongs to another user (uid "
                           f"{st.st_uid}), and loading them runs code they could have written; use a cache of your "
                           "own (--cache-dir / NB2PROD_CACHE_DIR)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Nb2ProdError(f"refusing to load cached outputs from {directory}: it is writable by others (mode "
                           f"{stat.S_IMODE(st.st_mode):04o}), and loading them runs whatever code was put there; "
                           f"`chmod go-w {directory}` if only you write it, or use another cache directory")


def _tagged(path: Path) -> bool:
    tag = path / TAG
    try:
        return not tag.is_symlink() and tag.read_text().startswith(_TAG_TEXT.splitlines()[0]) and \
            "nb2prod" in tag.read_text()
    except OSError:
        return False


def _cache_shaped(child: Path) -> bool:
    """Whether a child of a cache directory is something nb2prod puts there."""
    if child.is_symlink():
        return False
    if child.is_dir():
        return bool(_PREFIX.fullmatch(child.name) or _TMP.fullmatch(child.name))
    return child.name == TAG or bool(_TAG_TMP.fullmatch(child.name) or PROBE.fullmatch(child.name))


def _entry(directory: Path, key: str) -> Path:
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a cache key: {key!r}")
    return directory / key[:2] / key


def _entry_dirs(directory: Path) -> Iterator[Path]:
    """Every directory of the cache that has an entry's name shape (``<key[:2]>/<key>``, real directories)."""
    for prefix in sorted(directory.iterdir()):
        if _PREFIX.fullmatch(prefix.name) and prefix.is_dir() and not prefix.is_symlink():
            for entry in sorted(prefix.iterdir()):
                if _KEY.fullmatch(entry.name) and entry.name[:2] == prefix.name and entry.is_dir() \
                        and not entry.is_symlink():
                    yield entry


def lookup(directory: Path, key: str) -> dict[str, Any] | None:
    """The entry's metadata when ``key`` is cached (and marks it used), else None."""
    try:
        meta_path = _entry(directory, key) / "meta.json"
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    meta["last_used"] = time.time()
    _write_json(meta_path, meta)
    return meta


def entry_meta(stage: str, run_id: str, metrics: dict[str, Any], cells: dict[str, Any]) -> dict[str, Any]:
    """What an entry records of the stage run that wrote it (:func:`write` adds its key, size and times)."""
    return {"stage": stage, "run_id": run_id, "metrics": metrics, "cells": cells}


def write(directory: Path, key: str, outputs: dict[str, Any] | Pickled, meta: dict[str, Any],
          evict_after: bool = True) -> int:
    """Store ``outputs`` (or outputs already :func:`pickled`) under ``key`` atomically, then (``evict_after``) evict
    beyond the size bound; returns bytes written."""
    final = _entry(directory, key)
    if (final / "meta.json").exists():
        return 0
    entry = outputs if isinstance(outputs, Pickled) else pickled(outputs)
    tmp = directory / f".tmp-{uuid.uuid4().hex}"
    private_dir(tmp / "buffers")
    write_private(tmp / "outputs.pkl", entry.data)
    size = len(entry.data)
    for i, buffer in enumerate(entry.buffers):
        write_private(tmp / "buffers" / f"{i}.bin", buffer)
        size += buffer.nbytes
    _write_json(tmp / "meta.json", {**meta, "key": key, "size": size, "buffers": len(entry.buffers),
                                    "created": time.time(), "last_used": time.time()})
    private_dir(final.parent)
    try:
        os.rename(tmp, final)
    except OSError:  # another writer won the race
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    if evict_after:
        evict(directory, max_bytes())
    return size


@dataclass
class Pickled:
    """A stage's outputs as a cache entry stores them: the pickle and its large buffers (numpy byte arrays). Outputs
    travel in this form, from the stage's worker (:func:`pickled`) or the cache: the coordinator, the cache actor and
    a client writing its own cache never unpickle them (they may not import the objects' libraries, nor the
    notebook's own modules); the consuming stage's worker does (:meth:`load`), with the notebook's directory on its
    path."""

    data: bytes
    buffers: list[Any]

    def load(self) -> dict[str, Any]:
        """The outputs (large arrays zero-copy views of the buffers)."""
        import pickle

        return pickle.loads(self.data, buffers=[memoryview(b) for b in self.buffers])


def pickled(outputs: dict[str, Any]) -> Pickled:
    """``outputs`` pickled as an entry stores them: protocol 5, buffers of 64 KiB and more (numpy data) out of band
    and not copied. A stage's worker hands its outputs on in this form (see :class:`Pickled`)."""
    import cloudpickle

    buffers: list[Any] = []

    def keep(buffer) -> bool:
        view = buffer.raw()
        if view.nbytes < _INLINE_LIMIT:
            return True  # serialized in band
        import numpy as np  # there is numpy data (or another buffer as big)

        buffers.append(np.frombuffer(view, dtype=np.uint8))
        return False

    return Pickled(cloudpickle.dumps(outputs, protocol=5, buffer_callback=keep), buffers)


def read(directory: Path, key: str) -> Pickled:
    """The entry stored under ``key``, still pickled; its buffers are copied out of their memory-mapped files once
    (into the object store, by whoever sends them on). Refuses (raises Nb2ProdError) a cache that another user owns
    or others can write."""
    import numpy as np

    entry = _entry(directory, key)
    for path in (directory, entry.parent, entry):
        check_private(path)
    meta = json.loads((entry / "meta.json").read_text())
    return Pickled((entry / "outputs.pkl").read_bytes(),
                   [np.frombuffer(view, dtype=np.uint8) for view in _mapped(entry, meta["buffers"])])


def load(directory: Path, key: str) -> dict[str, Any]:
    """The outputs stored under ``key``; large arrays come back memory-mapped (read-only). Refuses (raises
    Nb2ProdError) a cache that another user owns or others can write."""
    import pickle

    entry = _entry(directory, key)
    for path in (directory, entry.parent, entry):
        check_private(path)
    meta = json.loads((entry / "meta.json").read_text())
    return pickle.loads((entry / "outputs.pkl").read_bytes(), buffers=_mapped(entry, meta["buffers"]))


def _mapped(entry: Path, count: int) -> list[Any]:
    """The entry's buffer files, memory-mapped read-only."""
    views = []
    for i in range(count):
        with open(entry / "buffers" / f"{i}.bin", "rb") as f:
            size = os.fstat(f.fileno()).st_size
            views.append(memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)) if size else b"")
    return views


def entries(directory: Path) -> list[dict[str, Any]]:
    """Metadata of every complete entry, most recently used first (``key`` is the entry's directory name); none
    where there is no cache."""
    if not directory.is_dir():
        return []
    found = []
    for entry in _entry_dirs(directory):
        try:
            meta = json.loads((entry / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            found.append({**meta, "key": entry.name})
    return sorted(found, key=lambda m: _number(m.get("last_used")), reverse=True)


def evict(directory: Path, limit: int) -> list[str]:
    """Remove least recently used entries until the cache holds at most ``limit`` bytes (only in a tagged
    cache directory, only entries of the right name shape)."""
    if not _tagged(directory):
        return []
    removed, total = [], 0
    for meta in entries(directory):
        total += _number(meta.get("size"))
        if total > limit:
            shutil.rmtree(_entry(directory, meta["key"]), ignore_errors=True)
            removed.append(meta["key"])
    return removed


def clear(directory: Path) -> int:
    """Remove every entry (and unfinished writes) of a tagged cache directory; returns how many entries there
    were. Nothing else in the directory is touched."""
    if not _tagged(directory):
        raise UsageError(f"{directory} is not an nb2prod cache directory (no {TAG}); nothing removed")
    count = len(entries(directory))
    for entry in list(_entry_dirs(directory)):
        shutil.rmtree(entry, ignore_errors=True)
    for child in directory.iterdir():
        if _TMP.fullmatch(child.name) and child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        elif _PREFIX.fullmatch(child.name) and child.is_dir() and not child.is_symlink():
            try:
                child.rmdir()  # only once empty
            except OSError:
                pass
    return count


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


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
        raise Nb2ProdError(f"the outputs of stage {stage!r} (run {record['id']}) are not in the cache {directory}: "
                           "evicted or cleared since, or the run was made by another client of a shared run store, "
                           "whose cache is its own; rerun the pipeline here")
    return load(directory, info["cache_key"])


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_private(path, json.dumps(data, default=str))
