"""Ship the notebook's directory to a cluster that may not share its files, content-addressed.

The client hashes the files it ships (honouring ``.rayignore``/``.gitignore`` patterns, with a size
limit that fails early and says what to exclude) and uploads one zip per content hash into the
cluster's internal KV store, once. A stage worker unpacks it once per node into a directory named
by the hash and runs there. Stage workers keep one generic runtime env: new content is never a
reason for new workers (Ray ties workers to a job and a runtime env). Extra ``--pip`` packages still
need a runtime env of their own (:func:`pip_env`).
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod.errors import UsageError

DEFAULT_LIMIT = 100 * 2**20
ALWAYS_EXCLUDED = [".git", "__pycache__", ".ipynb_checkpoints", "*.pyc"]
KV_PREFIX = b"nb2prod/ship/"
KV_NAMESPACE = b"nb2prod"


@dataclass
class Shipment:
    """The notebook directory's files to ship, and their content hash."""

    directory: Path
    files: list[str]  # relative posix paths, sorted
    key: str  # sha256 over (path, content) of every shipped file

    def upload(self) -> None:
        """Put the zip into the connected cluster's KV store unless content with this hash is there."""
        from ray.experimental import internal_kv

        name = KV_PREFIX + self.key.encode()
        if internal_kv._internal_kv_exists(name, namespace=KV_NAMESPACE):
            return
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for rel in self.files:
                zf.write(self.directory / rel, rel)
        internal_kv._internal_kv_put(name, buf.getvalue(), namespace=KV_NAMESPACE)


def prepare(notebook_dir: Path) -> Shipment:
    """Hash the notebook directory's shippable files (a UsageError when they are over the size limit)."""
    excludes = ALWAYS_EXCLUDED + _ignore_patterns(notebook_dir)
    sizes = _shipped_files(notebook_dir, excludes)
    size = sum(s for _, s in sizes)
    limit = int(os.environ.get("NB2PROD_MAX_SHIP_BYTES", DEFAULT_LIMIT))
    if size > limit:
        biggest = sorted(sizes, key=lambda item: item[1], reverse=True)[:3]
        listing = ", ".join(f"{p} ({s / 2**20:.1f} MiB)" for p, s in biggest)
        raise UsageError(f"the notebook's directory {notebook_dir} is {size / 2**20:.1f} MiB, over the "
                         f"{limit / 2**20:.0f} MiB limit for shipping it to the cluster; exclude large files in a "
                         f".rayignore (largest: {listing}) or raise NB2PROD_MAX_SHIP_BYTES")
    files = sorted(p for p, _ in sizes)
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256((notebook_dir / rel).read_bytes()).digest())
    return Shipment(notebook_dir, files, digest.hexdigest()[:32])


def pip_env(pip: list[str], requirements: str | None) -> dict[str, Any] | None:
    """The runtime env for extra packages (``--pip``, ``--requirements``), or None when there are none."""
    packages = list(pip)
    if requirements:
        try:
            packages += [ln.strip() for ln in Path(requirements).read_text().splitlines()
                         if ln.strip() and not ln.lstrip().startswith("#")]
        except OSError as exc:
            raise UsageError(f"cannot read --requirements {requirements}: {exc.strerror}") from None
    return {"pip": packages} if packages else None


def unpacked(key: str) -> str:
    """Inside a worker: the directory holding shipment ``key`` on this node, fetched and unpacked once."""
    target = _ship_root() / key
    if target.is_dir():
        return str(target)
    with open(_ship_root() / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker per node unpacks; the others wait for it
        if not target.is_dir():
            from ray.experimental import internal_kv

            data = internal_kv._internal_kv_get(KV_PREFIX + key.encode(), namespace=KV_NAMESPACE)
            if data is None:
                raise RuntimeError(f"the notebook directory shipped as {key} is not in the cluster's store")
            staging = Path(tempfile.mkdtemp(dir=_ship_root(), prefix=f".{key}-"))
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    zf.extractall(staging)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def _ship_root() -> Path:
    """Per-node directory of unpacked shipments: in the Ray session dir, so it goes with the cluster."""
    from nb2prod.runner.cluster import session_dir

    try:
        base = session_dir()
    except AttributeError:
        base = Path(tempfile.gettempdir())
    root = base / "nb2prod-ship"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def _ignore_patterns(directory: Path) -> list[str]:
    patterns: list[str] = []
    for name in (".rayignore", ".gitignore"):
        path = directory / name
        if path.is_file():
            patterns += [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return patterns


def _shipped_files(directory: Path, excludes: list[str]) -> list[tuple[str, int]]:
    sizes: list[tuple[str, int]] = []
    for root, dirs, files in os.walk(directory):
        rel_root = Path(root).relative_to(directory)
        dirs[:] = [d for d in dirs if not _excluded(rel_root / d, excludes)]
        for name in files:
            rel = rel_root / name
            path = Path(root) / name
            if not _excluded(rel, excludes) and path.is_file():
                sizes.append((rel.as_posix(), path.stat().st_size))
    return sizes


def _excluded(rel: Path, patterns: list[str]) -> bool:
    text = rel.as_posix()
    return any(fnmatch.fnmatch(text, p.strip("/")) or fnmatch.fnmatch(rel.name, p.strip("/")) for p in patterns)
