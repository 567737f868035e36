"""nb2prod's embedded cluster: Ray's temp dir in a per-user 0700 directory, the Ray floor that has token auth,
`nb2prod cluster down` leaving nothing of the cluster behind, and stages that owe nothing to the directory the
cluster was started from (each test's own cluster, in its own NB2PROD_HOME)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import psutil
import pytest
from packaging.requirements import Requirement

from nb2prod.errors import Nb2ProdError
from nb2prod.runner import cluster
from tests.conftest import ROOT, make_notebook


def test_ray_temp_dir_is_in_a_private_directory_of_this_user(nb2prod_home):
    temp = Path(cluster._temp_dir())
    parent = temp.parent.lstat()
    assert parent.st_uid == os.geteuid() and stat.S_ISDIR(parent.st_mode)
    assert stat.S_IMODE(parent.st_mode) == 0o700
    # Ray adds session_<date>_<time>_<micros>_<pid>/sockets/plasma_store: the whole must fit a unix socket path
    assert len(str(temp)) + len("/session_2026-12-01_23-29-07_976130_4194304/sockets/plasma_store") < 107


def test_a_temp_parent_someone_else_made_is_refused(monkeypatch, tmp_path):
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o777)
    os.chmod(planted, 0o777)
    monkeypatch.setattr(cluster, "Path", lambda _text: planted)
    with pytest.raises(Nb2ProdError, match="not a private directory"):
        cluster.user_tmp()
    os.chown(planted, 65534, 65534)
    os.chmod(planted, 0o700)
    with pytest.raises(Nb2ProdError, match="uid 65534"):
        cluster.user_tmp()


def test_ray_floor_has_token_auth():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ray = next(Requirement(d) for d in deps if Requirement(d).name == "ray")
    assert not ray.specifier.contains("2.51.1") and ray.specifier.contains("2.52.0")


def _cluster_tree(home: Path) -> list[psutil.Process]:
    """What the test sees of a cluster, independently of how nb2prod finds it: every process that inherited
    the cluster's NB2PROD_HOME (Ray's daemons, agents and workers, the keeper), and their descendants."""
    found = {}
    for proc in psutil.process_iter(["environ"]):
        try:
            if proc.pid != os.getpid() and (proc.info["environ"] or {}).get("NB2PROD_HOME") == str(home):
                found[proc.pid] = proc
                found.update((c.pid, c) for c in proc.children(recursive=True))
        except psutil.Error:
            continue
    return list(found.values())


@pytest.mark.slow
def test_cluster_down_leaves_no_process_of_the_cluster(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "NB2PROD_HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    up = subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "up", "--num-cpus", "1"], env=env,
                        capture_output=True, text=True, timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        tree = _cluster_tree(home)
        names = {p.name() for p in tree}
        assert {"gcs_server", "raylet"} <= names, names
        assert any("DashboardAgent" in " ".join(p.cmdline()) for p in tree)  # the ones that ignore SIGTERM
        commands = [" ".join(p.cmdline()) for p in tree]  # a lean head: nothing nb2prod does not use
        assert not [c for c in commands if "ray.util.client.server" in c or "dashboard/dashboard.py" in c], commands
        down = subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "down"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert down.returncode == 0 and "stopped" in down.stdout, down.stderr
        time.sleep(0.5)
        left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, [(p.pid, " ".join(p.cmdline())[:80]) for p in left]
    finally:
        _kill(home)


def _kill(home: Path) -> None:
    """Never leak a cluster, even when a test fails."""
    for proc in _cluster_tree(home):
        try:
            proc.kill()
        except psutil.Error:
            pass


@pytest.mark.slow
def test_stages_owe_nothing_to_the_directory_the_cluster_was_started_from(tmp_path):
    """Ray puts a driver's working directory on its job's workers' sys.path and starts workers in the raylet's: a
    module beside where the first `nb2prod` ran was importable by every stage of every notebook, and once that
    directory was deleted every stage failed (FileNotFoundError from os.getcwd)."""
    home, started, work = tmp_path / "home", tmp_path / "started", tmp_path / "work"
    started.mkdir()
    work.mkdir()
    (started / "started_here.py").write_text("X = 1\n")
    env = {**os.environ, "NB2PROD_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    nb = make_notebook(work / "nb.ipynb", [
        ("import importlib.util\nassert importlib.util.find_spec('started_here') is None", ["stage:s"])])

    def run(cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nb2prod", "run", str(nb), "--no-cache", "--quiet"], env=env,
                              cwd=cwd, capture_output=True, text=True, timeout=300)

    try:
        first = run(started)  # starts the cluster from `started`
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        shutil.rmtree(started)
        again = run(work)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    finally:
        subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "down"], env=env, capture_output=True, timeout=60)
        _kill(home)


@pytest.mark.slow
def test_a_cluster_that_cannot_start_leaves_no_keeper_behind(tmp_path, monkeypatch):
    """The keeper starts beside `ray start` (it imports meanwhile) and waits for it: when the start fails, it goes
    with the rest and never starts a cluster of its own."""
    home = tmp_path / "home"
    env = {**os.environ, "NB2PROD_HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    up = subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "up", "--num-cpus", "-1"], env=env,
                        capture_output=True, text=True, timeout=180)
    assert up.returncode == 1 and "could not start the local Ray cluster" in up.stderr, up.stderr
    assert "Traceback" not in up.stderr.split("could not start")[0]
    monkeypatch.setenv("NB2PROD_HOME", str(home))
    marker = cluster._temp_dir()
    time.sleep(1)
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert not left and not (home / "cluster" / "cluster.json").exists(), left


def test_a_process_that_imported_ray_first_joins_the_embedded_cluster(ray_cluster):
    """A kernel whose notebook imported ray before ``%nb2prod run``: Ray read its token settings at import."""
    code = ("import ray\nfrom nb2prod.runner import cluster\ncluster.connect()\n"
            "print('joined', ray.get(ray.put(41)) + 1)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and "joined 42" in proc.stdout, proc.stderr[-2000:]
