"""Ship the notebook's directory (and extra packages) to a cluster that does not share its files,
through Ray's ``runtime_env``: ``working_dir`` honouring ``.rayignore``/``.gitignore`` patterns, with a
size limit that fails early and says what to exclude."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from nb2prod.errors import UsageError

DEFAULT_LIMIT = 100 * 2**20
ALWAYS_EXCLUDED = [".git", "__pycache__", ".ipynb_checkpoints", "*.pyc"]


def runtime_env(notebook_dir: Path, pip: list[str], requirements: str | None) -> dict[str, Any]:
    """The runtime env for stages on a remote cluster."""
    excludes = ALWAYS_EXCLUDED + _ignore_patterns(notebook_dir)
    size, biggest = _shipped_size(notebook_dir, excludes)
    limit = int(os.environ.get("NB2PROD_MAX_SHIP_BYTES", DEFAULT_LIMIT))
    if size > limit:
        listing = ", ".join(f"{p} ({s / 2**20:.1f} MiB)" for p, s in biggest)
        raise UsageError(f"the notebook's directory {notebook_dir} is {size / 2**20:.1f} MiB, over the "
                         f"{limit / 2**20:.0f} MiB limit for shipping it to the cluster; exclude large files in a "
                         f".rayignore (largest: {listing}) or raise NB2PROD_MAX_SHIP_BYTES")
    env: dict[str, Any] = {"working_dir": str(notebook_dir), "excludes": excludes}
    packages = list(pip)
    if requirements:
        try:
            packages += [ln.strip() for ln in Path(requirements).read_text().splitlines()
                         if ln.strip() and not ln.lstrip().startswith("#")]
        except OSError as exc:
            raise UsageError(f"cannot read --requirements {requirements}: {exc.strerror}") from None
    if packages:
        env["pip"] = packages
    return env


def _ignore_patterns(directory: Path) -> list[str]:
    patterns: list[str] = []
    for name in (".rayignore", ".gitignore"):
        path = directory / name
        if path.is_file():
            patterns += [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return patterns


def _shipped_size(directory: Path, excludes: list[str]) -> tuple[int, list[tuple[str, int]]]:
    sizes: list[tuple[str, int]] = []
    for root, dirs, files in os.walk(directory):
        rel_root = Path(root).relative_to(directory)
        dirs[:] = [d for d in dirs if not _excluded(rel_root / d, excludes)]
        for name in files:
            rel = rel_root / name
            if not _excluded(rel, excludes):
                sizes.append((str(rel), (Path(root) / name).stat().st_size))
    sizes.sort(key=lambda item: item[1], reverse=True)
    return sum(s for _, s in sizes), sizes[:3]


def _excluded(rel: Path, patterns: list[str]) -> bool:
    text = rel.as_posix()
    return any(fnmatch.fnmatch(text, p.strip("/")) or fnmatch.fnmatch(rel.name, p.strip("/")) for p in patterns)
