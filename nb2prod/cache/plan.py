"""Which stages of a run are served from the cache: plain reruns, ``--force``, ``--no-cache``,
``resume`` and ``--stage`` runs.

Keys are computed once, in topological order, and each stage's choice is made before its downstream keys
are derived: a stage taken from the cache contributes the key of the entry actually used, so a stage that
runs stores its outputs under a key naming exactly what it consumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nb2prod import cache
from nb2prod.core.cachekey import stage_keys
from nb2prod.core.spec import PipelineSpec
from nb2prod.contracts import SUCCESSFUL, RunOptions
from nb2prod.errors import Nb2ProdError, UsageError
from nb2prod.store import runs as store


def plan(spec: PipelineSpec, parameters: dict[str, Any], options: RunOptions,
         notebook: str | None = None) -> tuple[str, dict[str, str], dict[str, dict]]:
    """Return ``(cache dir, {stage: key}, {stage: cache entry meta for hits})``. ``notebook``: the path the run
    store knows the notebook's runs by (a Ray job runs a copy of it), else the spec's."""
    notebook = notebook or spec.notebook
    directory = cache.cache_dir(options.cache_dir)
    forced = set(spec.downstream(options.force)) if options.force else set()
    run_now = set(spec.downstream(options.stages) if options.downstream else options.stages)
    needed = {u for name in run_now for u in spec.stages[name].upstream} - run_now
    resumed = _resumed_keys(notebook, options.resume_from) if options.resume_from else None
    hits: dict[str, dict] = {}

    def choose(name: str, key: str) -> str:
        if name in run_now:
            return key
        if resumed is not None:  # resume: the earlier run's successful stages, whatever their key is now
            found = _found(directory, resumed.get(name))
        elif options.no_cache or name in forced or spec.stages[name].nocache:
            found = None
        else:
            found = _found(directory, key)
        if found is None and name in needed:  # a --stage run's input: the newest run that stored it
            found = _latest_stored(notebook, name, directory)
        if found is None:
            return key
        hits[name] = found[1]
        return found[0]

    keys = stage_keys(spec, parameters, choose)
    if hits:
        cache.check_private(directory)
    return str(directory), keys, hits


def _found(directory: Path, key: str | None) -> tuple[str, dict] | None:
    meta = cache.lookup(directory, key) if key else None
    return (key, meta) if meta is not None else None


def _resumed_keys(notebook: str, run_id: str) -> dict[str, str]:
    """``{stage: cache key}`` of the successful stages of the run being resumed (of this notebook only)."""
    record = resumed_run(run_id, notebook)
    return {name: stage["cache_key"] for name, stage in record["stages"].items()
            if stage["status"] in SUCCESSFUL and stage.get("cache_key")}


def resumed_run(run_id: str, notebook: str) -> dict[str, Any]:
    """The record of the run to resume; a UsageError unless it is an ended run of ``notebook`` with something
    left to run."""
    record = store.get_run(run_id)
    if record["notebook"] != notebook:
        raise UsageError(f"run {record['id']} is a run of {record['notebook']}, not of {notebook}; "
                         "resume a run of the same notebook (`nb2prod runs NOTEBOOK` lists them)")
    if record["status"] == "running":
        raise UsageError(f"run {record['id']} is still running; resume it once it has ended "
                         f"(`nb2prod cancel {record['id']}` stops it)")
    if record["status"] == "done" and all(stage["status"] in SUCCESSFUL for stage in record["stages"].values()):
        raise UsageError(f"run {record['id']} has nothing to resume: every stage of it succeeded; "
                         f"`nb2prod run {notebook}` runs the notebook again (unchanged stages come from the cache)")
    return record


def _latest_stored(notebook: str, stage: str, directory: Path) -> tuple[str, dict]:
    for record in store.list_runs(notebook, limit=50):
        info = record["stages"].get(stage)
        if info and info["status"] in SUCCESSFUL:
            found = _found(directory, info.get("cache_key"))
            if found is not None:
                return found
    raise Nb2ProdError(f"cannot take the inputs of the selected stage(s) from upstream stage {stage!r}: "
                       "no earlier run of this notebook has its outputs stored; run the whole pipeline "
                       "first (or add --downstream from an earlier stage)")
