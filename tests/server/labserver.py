"""Start a real ``jupyter lab`` on 127.0.0.1 with a token and its own temp dirs (e2e test, benchmark)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.procs import stop_group

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``with LabServer(root, tmp) as lab:`` → ``lab.url``, ``lab.token``, ``lab.api(path)``; stopped by PID."""

    def __init__(self, root: Path, workdir: Path, extra_args: list[str] | None = None,
                 settings: dict[str, dict] | None = None) -> None:
        """``settings``: user settings by plugin file, e.g. ``{"@jupyterlab/apputils-extension/themes": {...}}``."""
        self.root = Path(root)
        self.settings = settings or {}
        self.workdir = Path(workdir)
        self.extra_args = extra_args or []
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "jupyter-lab.log"

    def __enter__(self) -> "LabServer":
        dirs = {name: self.workdir / name for name in ("config", "runtime", "settings", "workspaces", "data")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        # The "Jupyter news" toast would cover screenshots.
        settings = {"@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                    **self.settings}
        for name, values in settings.items():
            target = dirs["settings"] / f"{name}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]),
               "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={dirs['settings']}",
               f"--LabApp.workspaces_dir={dirs['workspaces']}",
               *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []), *self.extra_args]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(self.root), start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.proc.returncode}):\n{self.log()}")
            try:
                self.api("api/status")
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"jupyter lab did not start:\n{self.log()}") from None
                time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            stop_group(self.proc, grace_s=15)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def api(self, path: str, body: dict | None = None, method: str | None = None):
        """A JSON request with the token (``body`` makes it a POST)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/{path}", data=data, method=method or ("POST" if data else "GET"),
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def lab_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}"
