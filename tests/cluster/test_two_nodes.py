"""A real two-node Ray cluster on this machine (`ray start --head` + `ray start --address` with a custom
resource), driven through `nb2prod run --ray-address`: placement, shipping the notebook dir, node loss.

Multi-node Ray refuses the loopback-only switch, so this test cluster (unlike nb2prod's embedded one)
runs with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1; it keeps token auth and lives only for the module.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_notebook
from tests.procs import kill_named

pytestmark = pytest.mark.slow


def _ray_start(env: dict, *args: str) -> None:
    from nb2prod.runner.cluster import agent_ports

    subprocess.run([sys.executable, "-m", "nb2prod.runner.raystart", "start", "--node-ip-address=127.0.0.1",
                    "--disable-usage-stats", *agent_ports(), *args], env=env, check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def two_nodes(nb2prod_home, tmp_path_factory):
    base = tmp_path_factory.mktemp("two-nodes")
    token = base / "token"
    token.write_text(secrets.token_hex(32))
    marker = f"/tmp/nb2prod-2n-{os.getpid()}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token)}
    _ray_start(env, "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
               f"--temp-dir={marker}-head")
    _ray_start(env, f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"edge": 1}',
               f"--temp-dir={marker}-edge")
    client_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    yield {"address": f"127.0.0.1:{port}", "env": client_env, "edge": f"{marker}-edge"}
    kill_named(marker)


def _run(nb: Path, cluster: dict, timeout: float = 180) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nb2prod", "run", str(nb), "--ray-address", cluster["address"],
                             "--json", "--quiet", "--no-cache"], env=cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_pinned_stage_runs_on_the_edge_node_and_its_outputs_flow(tmp_path, two_nodes):
    (tmp_path / "helper.py").write_text("BASE = 41\n")  # shipped with the notebook's directory
    nb = make_notebook(tmp_path / "pin.ipynb", [
        ("import ray\nfrom helper import BASE\nnode = ray.get_runtime_context().get_node_id()\n"
         "edge_nodes = [n['NodeID'] for n in ray.nodes() if n['Alive'] and n['Resources'].get('edge')]\n"
         "assert node in edge_nodes, (node, edge_nodes)\nvalue = BASE", ["stage:edge", "resources:edge=1"]),
        ("answer = value + 1\nassert answer == 42", ["stage:head"]),
    ])
    proc = _run(nb, two_nodes)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    stages = json.loads(out.splitlines()[-1])["stages"]
    assert stages["edge"]["status"] == stages["head"]["status"] == "done"


def test_losing_the_only_eligible_node_fails_the_stage(tmp_path, two_nodes):
    started = tmp_path / "started"
    nb = make_notebook(tmp_path / "lose.ipynb", [
        (f"import pathlib, time\npathlib.Path({str(started)!r}).write_text('x')\ntime.sleep(600)\nx = 1",
         ["stage:edge", "resources:edge=1"]),
    ])
    proc = _run(nb, two_nodes)
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert started.exists(), proc.stderr.read() if proc.poll() is not None else "stage never started"
    kill_named(two_nodes["edge"])
    out, err = proc.communicate(timeout=120)  # the node loss ends the run, not the stage's own end
    assert proc.returncode == 1
    error = json.loads(out.splitlines()[-1])["stages"]["edge"]["error"]
    assert error["type"] == "NodeLostError" and "lost node" in error["message"], error
