"""Where nb2prod keeps its state: ``NB2PROD_HOME`` (default: the per-user data dir).

State is private: nb2prod's directories are 0700 and its files 0600 (:func:`private_dir`,
:func:`private_file`, :func:`write_private` — every state file is created through them).
"""

from __future__ import annotations

import os
import re
import stat
import uuid
from pathlib import Path


PROBE = re.compile(r"\.nb2prod-probe-[0-9a-f]{32}")  # a file that lives for a moment: can the cluster see this dir?


def probe_name(token: str) -> str:
    """The name of a probe file (:data:`PROBE`) for ``token``, 32 hex digits."""
    return f".nb2prod-probe-{token}"


def home_dir() -> Path:
    """``$NB2PROD_HOME`` or the platform's per-user data dir; created (0700) on first use."""
    env = os.environ.get("NB2PROD_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("nb2prod", appauthor=False))
    return private_dir(path).resolve()


def run_dir(run_id: str) -> Path:
    """Per-run files: stage logs, the executed notebook, stage artifacts."""
    return private_dir(home_dir() / "runs" / run_id)


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else one SQLite MLflow store under ``NB2PROD_HOME`` (absolute, 0600)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{private_file(home_dir() / 'mlflow.db')}"


def private_dir(path: Path) -> Path:
    """Create directory ``path`` 0700 (missing parents too); one that exists and is ours is narrowed to 0700."""
    if not path.is_dir():
        if not path.parent.is_dir():
            private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
    _narrow(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Make sure file ``path`` exists and is 0600 (for files another library writes: databases, logs)."""
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        _narrow(path, 0o600)
    return path


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically as a 0600 file (its directory created 0700)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _narrow(path: Path, mode: int) -> None:
    st = path.stat()
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & ~mode:
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
