"""Confine client-supplied paths to the Jupyter server's root directory: the notebook path, and every
path-valued run option, for runs and schedules alike (:func:`confine_options` is the one place)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import unquote, urlparse

from nb2prod.contracts.options import path_fields
from nb2prod.core.builder import real_path
from nb2prod.errors import Nb2ProdError, NotebookError, UsageError

# The RunOptions fields that name files (declared with ``path=`` in nb2prod.contracts.options) -> whether the
# file must already exist; ``tracking_uri`` and ``pip`` are checked by their own rules below.
PATH_OPTIONS = {name: kind == "input" for name, kind in path_fields().items()}


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
    real = _real(base / path, field, path)
    if real != base and base not in real.parents:
        raise PathRefused(f"{field!r} resolves outside the server root: {path!r}")
    if must_exist and not real.exists():
        raise PathNotFound(f"{path}: no such file")
    return real


def _real(path: Path, field: str, given: str) -> Path:
    """``real_path`` with its error as a 400 naming the request's field and value (not the server's paths)."""
    try:
        return real_path(path)
    except NotebookError as exc:
        shown = given if len(given) <= 120 else given[:120] + "…"
        raise UsageError(f"{field!r} {shown!r} is not a usable path: {exc.details['reason']}") from None


def confine_options(root: str | Path, options: object, home: str | Path) -> dict[str, Any]:
    """Run options from a REST client with every path-valued option confined: the file options to the server
    root (as real paths), a file-based tracking URI to the root or ``home`` (NB2PROD_HOME), and ``pip`` entries
    to package requirements (no local paths, no pip flags). Other fields pass unchanged (RunOptions checks them)."""
    if not isinstance(options, dict):
        raise UsageError("run options must be a JSON object")
    confined = dict(options)
    for name, must_exist in PATH_OPTIONS.items():
        if confined.get(name) is not None:
            confined[name] = str(confine(root, confined[name], field=name, must_exist=must_exist))
    if isinstance(confined.get("tracking_uri"), str):
        confined["tracking_uri"] = confine_tracking_uri(root, confined["tracking_uri"], home)
    pip = confined.get("pip")
    for entry in pip if isinstance(pip, list) else []:
        if isinstance(entry, str) and not _requirement(entry):
            raise PathRefused(f"'pip' entries are package requirements (PEP 508: name[extras] versions ; marker, or "
                              f"name @ https://URL), not local paths or pip options: {entry!r}")
    return confined


def _requirement(entry: str) -> bool:
    """Whether ``entry`` is one PEP 508 requirement naming no local file."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(entry)
    except InvalidRequirement:
        return False
    return not requirement.url or requirement.url.startswith(("https://", "git+https://"))


def confine_tracking_uri(root: str | Path, uri: str, home: str | Path) -> str:
    """A tracking URI from a REST client. Server URIs (``http(s)://``, ``postgresql://``, ...) pass unchanged;
    a file-based one (``sqlite:///PATH``, ``file:PATH``, a bare path) must lie under the server root (a relative
    path is relative to it) or under ``home``; it is returned with its real, absolute path."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or "?" in uri:
            raise PathRefused(f"'tracking_uri' {uri!r}: a SQLite tracking URI sent to the server is "
                              "sqlite:///PATH, PATH under the server root or NB2PROD_HOME")
        return f"sqlite:///{_confine_file(root, uri[len('sqlite:///'):], home)}"
    if scheme == "file":
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost") or parsed.query:
            raise PathRefused(f"'tracking_uri' {uri!r}: a file: URI names a local path, no host or query")
        return _confine_file(root, unquote(parsed.path), home).as_uri()
    if "://" in uri or (scheme and len(scheme) > 1 and scheme.isalpha()):
        return uri  # a tracking server (http, https, postgresql, mysql, databricks, ...): nothing on disk here
    return str(_confine_file(root, uri, home))


def _confine_file(root: str | Path, path: str, home: str | Path) -> Path:
    if not path.startswith("/"):
        return confine(root, path, field="tracking_uri", must_exist=False)
    if "\0" in path:
        raise UsageError("'tracking_uri' contains a NUL character")
    real = _real(Path(path), "tracking_uri", path)
    for base in (Path(root).resolve(), Path(home).resolve()):
        if real == base or base in real.parents:
            return real
    raise PathRefused(f"'tracking_uri' {path!r} lies outside the server root and NB2PROD_HOME")


def relative(root: str | Path, path: str | None) -> str | None:
    """``path`` relative to ``root`` (``/``-separated), or None when it lies outside."""
    if not path:
        return None
    try:
        return real_path(path).relative_to(Path(root).resolve()).as_posix()
    except (ValueError, NotebookError):  # outside, or no longer a usable path (a symlink loop since)
        return None
