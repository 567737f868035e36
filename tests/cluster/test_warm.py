"""A cluster started with `ray start --head` (as users start theirs) is as warm as the embedded one: stage
workers and the coordinator outlive each `nb2prod run`; the notebook directory is shipped content-addressed
and local modules are isolated per directory and never stale; a short run does not wait behind another
client's long stage; a client of other nb2prod code gets a clear error; `nb2prod cluster up --ray-address` readies
a cluster before its first run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_notebook, ray_start

pytestmark = pytest.mark.slow


def _run(nb: Path, cluster: dict, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nb2prod", "run", str(nb), "--ray-address", cluster["address"],
                           "--json", "--quiet", "--no-cache", *extra], capture_output=True, text=True,
                          env=env or cluster["env"], timeout=300, cwd=nb.parent)


def _ok(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("{")))
    assert record["status"] == "done", {n: s["error"] for n, s in record["stages"].items()}
    return record


def _reporting(directory: Path, name: str = "report.ipynb") -> Path:
    """A one-stage notebook that writes its worker's pid, the local module's value, whether its worker built
    jsonschema's IRI parsers at `import ray` (nb2prod's lazy imports spare it that) and whether it can import a
    module ``started_here`` to ``$OUT_DIR/seen.json``."""
    return make_notebook(directory / name, [
        ("import importlib.util, json, os, sys\nfrom utils import VALUE\n"
         "open(os.path.join(os.environ['OUT_DIR'], 'seen.json'), 'w').write(json.dumps("
         "{'pid': os.getpid(), 'value': VALUE, 'parsers_built': 'lark' in sys.modules,"
         " 'started_here': importlib.util.find_spec('started_here') is not None}))", ["stage:report"]),
    ])


def _seen(out: Path) -> dict:
    return json.loads((out / "seen.json").read_text())


def _coordinator_pid(cluster: dict) -> int:
    code = ("import ray, sys\nfrom nb2prod.runner.cluster import connect, NAMESPACE\n"
            "from nb2prod.runner.coordinator import coordinator_name\nconnect(sys.argv[1])\n"
            "a = ray.get_actor(coordinator_name(), namespace=NAMESPACE)\n"
            "print(ray.get(a.__ray_call__.remote(lambda self: __import__('os').getpid())))")
    proc = subprocess.run([sys.executable, "-c", code, cluster["address"]], capture_output=True, text=True,
                          env=cluster["env"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


@pytest.fixture
def out(tmp_path, ray_start_cluster):
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def _env(cluster: dict, out: Path) -> dict:
    return {**cluster["env"], "OUT_DIR": str(out)}


def test_cluster_up_launches_the_coordinator_the_first_run_then_uses(tmp_path):
    with ray_start(tmp_path) as cluster:
        up = subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "up", "--ray-address", cluster["address"]],
                            capture_output=True, text=True, env=cluster["env"], timeout=300)
        assert up.returncode == 0, up.stderr[-3000:]
        assert f"coordinator is up in the Ray cluster at {cluster['address']}" in up.stdout
        coordinator = _coordinator_pid(cluster)  # up before any run, outliving the `cluster up` process
        work = tmp_path / "nb"
        work.mkdir()
        (work / "utils.py").write_text("VALUE = 1\n")
        (tmp_path / "started_here.py").write_text("X = 1\n")  # where `ray start` ran: the keeper runs elsewhere
        _ok(_run(_reporting(work), cluster, "--env", "OUT_DIR", env=_env(cluster, tmp_path)))
        assert not _seen(tmp_path)["started_here"]  # Ray lends a driver's working directory to its job's workers
        assert _coordinator_pid(cluster) == coordinator
        again = subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "up", "--ray-address", cluster["address"]],
                               capture_output=True, text=True, env=cluster["env"], timeout=300)
        assert again.returncode == 0 and _coordinator_pid(cluster) == coordinator  # idempotent


def test_a_cluster_started_in_a_directory_since_deleted(tmp_path):
    """Ray starts every worker in its raylet's working directory, where the user ran `ray start`: once that is
    deleted, a new coordinator (MLflow resolves paths against it) and the stages still run."""
    started = tmp_path / "started"
    started.mkdir()
    work = tmp_path / "nb"
    work.mkdir()
    nb = make_notebook(work / "cwd.ipynb", [("import os\nhere = os.getcwd()", ["stage:s"])])
    with ray_start(started) as cluster:
        shutil.rmtree(started)  # before nb2prod first reached the cluster
        for _ in range(2):  # a new coordinator and stage workers, then warm ones
            _ok(_run(nb, cluster))


def test_second_run_reuses_stage_worker_and_coordinator_and_sees_edited_module(tmp_path, ray_start_cluster, out):
    work = tmp_path / "nb"
    work.mkdir()
    (work / "utils.py").write_text("VALUE = 1\n")
    nb = _reporting(work)
    env = _env(ray_start_cluster, out)
    _ok(_run(nb, ray_start_cluster, "--env", "OUT_DIR", env=env))
    first, coordinator = _seen(out), _coordinator_pid(ray_start_cluster)
    _ok(_run(nb, ray_start_cluster, "--env", "OUT_DIR", env=env))
    second = _seen(out)
    assert second["pid"] == first["pid"] and second["value"] == 1
    assert not first["parsers_built"]  # the coordinator's runtime env gave its stage workers the lazy imports
    assert _coordinator_pid(ray_start_cluster) == coordinator
    (work / "utils.py").write_text("VALUE = 2\n")  # an edited local module is never run stale
    _ok(_run(nb, ray_start_cluster, "--env", "OUT_DIR", env=env))
    assert _seen(out) == {"pid": first["pid"], "value": 2, "parsers_built": False, "started_here": False}


def test_two_directories_each_get_their_own_utils(tmp_path, ray_start_cluster, out):
    notebooks = {}
    for name in ("a", "b"):
        work = tmp_path / name
        work.mkdir()
        (work / "utils.py").write_text(f"VALUE = {name!r}\n")
        notebooks[name] = _reporting(work)
    env = _env(ray_start_cluster, out)
    pids = set()
    for name in ("a", "b", "a"):
        _ok(_run(notebooks[name], ray_start_cluster, "--env", "OUT_DIR", env=env))
        seen = _seen(out)
        assert seen["value"] == name
        pids.add(seen["pid"])
    assert len(pids) == 1  # one warm worker served both directories


def test_parallel_stages_keep_their_warm_workers_while_the_cache_is_written(tmp_path, ray_start_cluster, out):
    """Cache writes (every run writes its stages' outputs) used to be Ray tasks that took the idle warm workers
    just as the next stages were submitted: with Ray's default idle-worker policy, parallel stages then started in
    fresh workers (seen in half the runs of the example). The later runs' stages run in the first runs' workers."""
    log = "import os\nopen(os.path.join(os.environ['OUT_DIR'], 'pids.txt'), 'a').write(f\"{os.environ['RUN_N']} {os.getpid()}\\n\")\n"
    nb = make_notebook(tmp_path / "diamond.ipynb", [
        (log + "import numpy as np\ndata = np.arange(100_000)", ["stage:make"]),
        (log + "import time\ntime.sleep(1.5)\nleft = float(data.sum())", ["stage:left"]),  # in parallel: two workers
        (log + "import time\ntime.sleep(1.5)\nright = float(data.max())", ["stage:right"]),
        (log + "both = left + right", ["stage:join"]),
    ])
    for n in range(4):
        _ok(_run(nb, ray_start_cluster, "--env", "OUT_DIR", "--env", "RUN_N",
                 env={**_env(ray_start_cluster, out), "RUN_N": str(n)}))
    runs: dict[str, set[str]] = {}
    for line in (out / "pids.txt").read_text().splitlines():
        run, pid = line.split()
        runs.setdefault(run, set()).add(pid)
    assert runs["2"] | runs["3"] <= runs["0"] | runs["1"], runs


def test_short_run_does_not_wait_behind_another_clients_long_stage(tmp_path, ray_start_cluster):
    started, finished = tmp_path / "long-started", tmp_path / "long-finished"
    long_nb = make_notebook(tmp_path / "long.ipynb", [
        (f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(30)\nopen({str(finished)!r}, 'w').close()",
         ["stage:long"]),
    ])
    short_nb = make_notebook(tmp_path / "short.ipynb", [("x = 1", ["stage:short"])])
    long_run = subprocess.Popen([sys.executable, "-m", "nb2prod", "run", str(long_nb), "--ray-address",
                                 ray_start_cluster["address"], "--quiet", "--no-cache"], env=ray_start_cluster["env"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not started.exists():
            assert long_run.poll() is None and time.time() < deadline, long_run.stderr.read()[-2000:]
            time.sleep(0.1)
        _ok(_run(short_nb, ray_start_cluster))
        assert not finished.exists(), "the short run waited for the other client's long stage"
    finally:
        long_run.kill()
        long_run.wait()


def test_client_of_other_nb2prod_code_gets_a_clear_error(tmp_path, ray_start_cluster):
    other = tmp_path / "other"
    shutil.copytree(ROOT / "nb2prod", other / "nb2prod", ignore=shutil.ignore_patterns("labextension", "__pycache__"))
    init = other / "nb2prod" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9+other-'))
    nb = make_notebook(tmp_path / "one.ipynb", [("x = 1", ["stage:one"])])
    proc = _run(nb, ray_start_cluster, env={**ray_start_cluster["env"], "PYTHONPATH": str(other)})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "9.9.9+other-" in proc.stderr and "nb2prod 0." in proc.stderr
    assert "Traceback" not in proc.stderr
