"""Which stages of a run are served from the cache: plain reruns, ``--force``, ``--no-cache``,
``resume`` and ``--stage`` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nb2prod import cache
from nb2prod.core.cachekey import stage_keys
from nb2prod.core.spec import PipelineSpec
from nb2prod.errors import Nb2ProdError
from nb2prod.contracts import SUCCESSFUL, RunOptions
from nb2prod.store import runs as store


def plan(spec: PipelineSpec, parameters: dict[str, Any], options: RunOptions) -> tuple[str, dict[str, str], dict[str, dict]]:
    """Return ``(cache dir, {stage: key}, {stage: cache entry meta for hits})``."""
    directory = cache.cache_dir(options.cache_dir)
    keys = stage_keys(spec, parameters)
    forced = set(spec.downstream(options.force)) if options.force else set()
    hits: dict[str, dict] = {}
    if options.resume_from:
        hits = _resumed(directory, options.resume_from)
        keys.update({name: meta["key"] for name, meta in hits.items()})
    elif not options.no_cache:
        for name, stage in spec.stages.items():
            if name not in forced and not stage.nocache:
                meta = cache.lookup(directory, keys[name])
                if meta is not None:
                    hits[name] = meta
    if options.stages:
        run_now = set(spec.downstream(options.stages) if options.downstream else options.stages)
        hits = {n: m for n, m in hits.items() if n not in run_now}
        _seed_upstream(spec, directory, keys, hits, run_now)
    return str(directory), keys, hits


def _resumed(directory: Path, run_id: str) -> dict[str, dict]:
    """Successful stages of the earlier run, taken from the cache."""
    record = store.get_run(run_id)
    hits = {}
    for name, stage in record["stages"].items():
        if stage["status"] in SUCCESSFUL and stage.get("cache_key"):
            meta = cache.lookup(directory, stage["cache_key"])
            if meta is not None:
                hits[name] = meta
    return hits


def _seed_upstream(spec: PipelineSpec, directory: Path, keys: dict[str, str], hits: dict[str, dict],
                   run_now: set[str]) -> None:
    """Upstream stages of a ``--stage`` run come from the cache or the latest successful run."""
    needed = {u for name in run_now for u in spec.stages[name].upstream} - run_now
    for name in sorted(needed):
        if name not in hits:  # the newest run of this notebook that stored it
            latest = _latest_stored(spec.notebook, name, directory)
            if latest is None:
                raise Nb2ProdError(f"cannot take the inputs of the selected stage(s) from upstream stage {name!r}: "
                                   "no earlier run of this notebook has its outputs stored; run the whole pipeline "
                                   "first (or add --downstream from an earlier stage)")
            keys[name], hits[name] = latest


def _latest_stored(notebook: str, stage: str, directory: Path) -> tuple[str, dict] | None:
    for record in store.list_runs(notebook, limit=50):
        info = record["stages"].get(stage)
        if info and info["status"] in SUCCESSFUL and info.get("cache_key"):
            meta = cache.lookup(directory, info["cache_key"])
            if meta is not None:
                return info["cache_key"], meta
    return None
