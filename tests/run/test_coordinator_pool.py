"""The coordinator's run pool is a setting (NB2PROD_COORDINATOR_RUNS) and control calls have threads of their
own: with the pool set to 4 and 6 runs at once, at most 4 are orchestrated together, a poll is answered while
every run slot is busy, and all 6 finish. Its own cluster (`nb2prod cluster up` with the setting)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import make_notebook

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent('''
    import json, sys, threading, time
    from nb2prod import api
    from nb2prod.runner.cluster import connect
    from nb2prod.contracts import RunOptions
    from nb2prod.store import runs as store

    connect()
    import ray
    from nb2prod.runner.coordinator import get_coordinator

    records = []

    def run():
        try:
            records.append(api.run(sys.argv[1], RunOptions(no_cache=True)))
        except Exception as exc:  # the test shows why
            records.append({"status": repr(exc), "mlflow_run_id": None})

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.time() + 120
    while sum(1 for r in store.list_runs() if r["mlflow_run_id"]) < 4 and time.time() < deadline:
        time.sleep(0.1)  # until 4 runs are being orchestrated: every run slot is taken
    started = time.time()
    ray.get(get_coordinator(embedded=True).poll.remote("probe", 0), timeout=60)
    poll_s = time.time() - started
    for t in threads:
        t.join()
    print(json.dumps({"poll_s": poll_s, "runs": [[r["status"], r["mlflow_run_id"]] for r in records]}))
''')


@pytest.mark.timeout(900)  # its own budgets (cluster up 240 s, driver 400 s, down 120 s) exceed the 300 s default
def test_six_runs_through_a_pool_of_four(tmp_path):
    from mlflow import MlflowClient

    home = tmp_path / "home"
    env = {**os.environ, "NB2PROD_HOME": str(home), "NB2PROD_COORDINATOR_RUNS": "4",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    nb = make_notebook(tmp_path / "wait.ipynb", [("import time\ntime.sleep(30)\nx = 1", ["stage:wait"])])
    try:
        up = subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "up", "--num-cpus", "6"], env=env,
                            capture_output=True, text=True, timeout=240)
        assert up.returncode == 0, up.stderr
        driver = subprocess.run([sys.executable, "-c", DRIVER, str(nb)], env=env, capture_output=True, text=True,
                                timeout=400)
        assert driver.returncode == 0, driver.stderr[-3000:]
        result = json.loads(driver.stdout.splitlines()[-1])
    finally:
        subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "down"], env=env, capture_output=True, timeout=120)
    assert [status for status, _ in result["runs"]] == ["done"] * 6
    assert result["poll_s"] < 15, result  # answered while 4 runs held every run thread (each sleeps 30 s)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    spans = [(client.get_run(mlflow_id).info.start_time, client.get_run(mlflow_id).info.end_time)
             for _, mlflow_id in result["runs"]]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 4, spans  # the 5th and 6th waited for a free slot
