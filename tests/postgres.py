"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries, a throwaway cluster on 127.0.0.1
and a free port, password auth, one fresh database per test. ``initdb``/``postgres`` refuse to run as root, so
as root the cluster belongs to the ``postgres`` user (``runuser``)."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import free_port
from tests.procs import stop_group


def binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb and postgres, else None."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if (Path(p) / "postgres").exists()]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


class PostgresServer:
    """``start()`` initdb + postgres; ``new_database()`` → a SQLAlchemy URL; ``stop()`` a fast shutdown."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="nb2prod-pg-"))
        self.password = secrets.token_hex(12)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._count = 0

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        data, pwfile = self.root / "data", self.root / "pw"
        pwfile.write_text(self.password)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        subprocess.run([*self._as_owner(), str(self.bin / "initdb"), "-D", str(data), "-U", "postgres",
                        f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        self.log = open(self.root / "server.log", "wb")
        self.proc = subprocess.Popen(
            [*self._as_owner(), str(self.bin / "postgres"), "-D", str(data), "-k", str(self.root), "-p",
             str(self.port), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while True:
            try:
                self._admin("SELECT 1")
                return
            except Exception:  # noqa: BLE001 - not accepting connections yet
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", password=self.password,
                             dbname="postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; its URL."""
        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            stop_group(self.proc, grace_s=30, first=signal.SIGINT)  # SIGINT: "fast" shutdown, disconnects clients
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)
