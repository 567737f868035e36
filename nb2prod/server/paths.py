"""Confine client-supplied paths to the Jupyter server's root directory."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from nb2prod.errors import Nb2ProdError, UsageError


class PathRefused(Nb2ProdError):
    """An absolute path, a ``..`` component, or a symlink out of the server root (HTTP 403)."""

    http_status = 403


class PathNotFound(Nb2ProdError):
    """The path is inside the root but names no file (HTTP 404)."""

    http_status = 404


def confine(root: str | Path, path: object, *, field: str = "path", must_exist: bool = True) -> Path:
    """The real path of ``path`` (relative to ``root``, ``/``-separated); raise unless it stays inside."""
    if not isinstance(path, str) or not path.strip():
        raise UsageError(f"{field!r} must be a non-empty string: a path relative to the server root")
    if "\0" in path:
        raise UsageError(f"{field!r} contains a NUL character")
    if path.startswith(("/", "\\", "~")) or PureWindowsPath(path).drive or Path(path).is_absolute():
        raise PathRefused(f"{field!r} must be relative to the server root, not {path!r}")
    if ".." in PurePosixPath(path.replace("\\", "/")).parts:
        raise PathRefused(f"{field!r} may not contain '..': {path!r}")
    base = Path(root).resolve()
    real = (base / path).resolve()
    if real != base and base not in real.parents:
        raise PathRefused(f"{field!r} resolves outside the server root: {path!r}")
    if must_exist and not real.exists():
        raise PathNotFound(f"{path}: no such file")
    return real


def relative(root: str | Path, path: str | None) -> str | None:
    """``path`` relative to ``root`` (``/``-separated), or None when it lies outside."""
    if not path:
        return None
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return None
