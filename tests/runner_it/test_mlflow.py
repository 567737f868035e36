"""What MLflow holds after a run: parent tags/params/artifacts, one child per started stage, metrics,
stage-side MLflow calls (also from parallel stages), stage_dir artifacts, secrets masked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nb2prod import api
from nb2prod.contracts import RunOptions
from tests.conftest import make_notebook, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("any_cluster")]


def _children(client, parent):
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return {r.info.run_name: r for r in runs}


@pytest.fixture
def stage_client(request, monkeypatch):
    """The MLflow client of the store a run whose stages call MLflow themselves logs to. nb2prod assumes only its
    embedded cluster sees this machine's files, so on a `ray start` cluster stage code reaches MLflow through a
    tracking server, as in production (docs/cluster.md); the embedded cluster uses the session's SQLite store."""
    from mlflow import MlflowClient

    if request.node.callspec.params["any_cluster"] == "embedded":
        return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    url = request.getfixturevalue("mlflow_server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    return MlflowClient(url)


@pytest.fixture
def tracked(tmp_path):
    return make_notebook(tmp_path / "tracked.ipynb", [
        ("import time\nimport nb2prod", ["setup"]),
        ("n = 3\nrate = 0.25\nname = 'abc'", ["parameters"]),
        ("data = list(range(n))\nprint('loaded', len(data))", ["stage:load"]),
        ("import mlflow\ntime.sleep(0.5)\nmlflow.log_metric('left_m', 1.0)\nmlflow.log_param('left_p', 'L')\n"
         "(nb2prod.stage_dir() / 'left.txt').write_text('left artifact')\nleft = sum(data)", ["stage:left"]),
        ("import mlflow\ntime.sleep(0.5)\nmlflow.log_metric('m', 1.0)\nmlflow.log_metric('right_m', 2.0)\n"
         "sub = nb2prod.stage_dir() / 'sub'\nsub.mkdir(exist_ok=True)\n(sub / 'right.json').write_text('{}')\n"
         "right = len(data) * rate", ["stage:right"]),
        ("score = left + right\naccuracy = 0.75", ["stage:evaluate", "metrics"]),
    ])


def test_parent_and_children(tracked, stage_client, tmp_path):
    mlflow_client = stage_client
    import nb2prod as pkg

    record = api.run(tracked, RunOptions(parameters={"n": 4}, no_cache=True))
    assert record["status"] == "done", record
    parent = mlflow_client.get_run(record["mlflow_run_id"])
    tags = parent.data.tags
    assert parent.info.status == "FINISHED"
    assert tags["nb2prod.kind"] == "pipeline"
    assert tags["nb2prod.run_id"] == record["id"]
    assert Path(tags["nb2prod.notebook"]).is_absolute() and Path(tags["nb2prod.notebook"]) == tracked.resolve()
    import hashlib

    assert tags["nb2prod.notebook_sha256"] == hashlib.sha256(tracked.read_bytes()).hexdigest()
    assert tags["nb2prod.version"] == getattr(pkg, "__version__", tags["nb2prod.version"]) and tags["nb2prod.version"]
    assert parent.data.params == {"n": "4", "rate": "0.25", "name": "abc"}
    # metrics cell values: on the stage's run and on the parent
    assert parent.data.metrics["score"] == 6 + 4 * 0.25 and parent.data.metrics["accuracy"] == 0.75
    top = {a.path for a in mlflow_client.list_artifacts(parent.info.run_id)}
    assert {"pipeline.json", "output.ipynb", "requirements.txt", "logs"} <= top
    logs = {a.path for a in mlflow_client.list_artifacts(parent.info.run_id, "logs")}
    assert any("load" in p for p in logs), logs

    children = _children(mlflow_client, parent)
    assert set(children) == {"load", "left", "right", "evaluate"}
    for name, child in children.items():
        assert child.info.status == "FINISHED"
        assert child.data.tags["nb2prod.kind"] == "stage"
        assert child.data.tags["nb2prod.stage"] == name
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.end_time >= child.info.start_time  # the stage's own times
    assert children["evaluate"].data.metrics["score"] == 7.0
    assert children["evaluate"].data.metrics["accuracy"] == 0.75
    # a stage's own MLflow calls land in its child run (two parallel stages both logging)
    assert children["left"].data.metrics["left_m"] == 1.0 and children["left"].data.params["left_p"] == "L"
    assert children["right"].data.metrics["m"] == 1.0 and children["right"].data.metrics["right_m"] == 2.0
    assert "m" not in parent.data.metrics and "left_m" not in parent.data.metrics
    assert "m" not in children["left"].data.metrics
    # stage_dir files become child-run artifacts
    assert "left.txt" in {a.path for a in mlflow_client.list_artifacts(children["left"].info.run_id)}
    assert "sub/right.json" in {a.path for a in mlflow_client.list_artifacts(children["right"].info.run_id, "sub")}


def test_parallel_stages_logging_to_mlflow_do_not_fail(tmp_path, stage_client):
    mlflow_client = stage_client
    cells = [("import mlflow", ["setup"])]
    for k in range(4):
        cells.append((f"for i in range(20):\n    mlflow.log_metric('v{k}', float(i), step=i)\nout{k} = {k}",
                      [f"stage:s{k}"]))
    nb = make_notebook(tmp_path / "parallel.ipynb", cells)
    record = api.run(nb, RunOptions(no_cache=True))
    assert record["status"] == "done", {n: s["error"] for n, s in record["stages"].items()}
    children = _children(mlflow_client, mlflow_client.get_run(record["mlflow_run_id"]))
    for k in range(4):
        history = mlflow_client.get_metric_history(children[f"s{k}"].info.run_id, f"v{k}")
        assert sorted(m.step for m in history) == list(range(20))


def test_secret_never_recorded(tmp_path, mlflow_client, nb2prod_home):
    secret = "s3cr3t"
    nb = make_notebook(tmp_path / "secret.ipynb", [
        ("token = 'placeholder'\nother = 'visible'", ["parameters"]),
        ("print('token is', token)\nimport sys\nprint('err', token, file=sys.stderr)\nn = len(token)",
         ["stage:use"]),
        ("m = n + 1", ["stage:after"]),
    ])
    out_nb = tmp_path / "out.ipynb"
    proc = run_cli("run", str(nb), "--no-cache", "--quiet", "--json", "--secret", "token", "-p", "token", secret,
                   "--output-notebook", str(out_nb))
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout and secret not in proc.stderr
    result = json.loads(proc.stdout)
    record = api.get_run(result["run_id"])
    assert record["status"] == "done"
    assert secret not in json.dumps(record) and record["parameters"]["token"] == "***"
    parent = mlflow_client.get_run(result["mlflow_run_id"])
    assert parent.data.params["token"] == "***" and parent.data.params["other"] == "visible"
    assert secret not in json.dumps(parent.data.tags)
    from mlflow.artifacts import download_artifacts

    runs = [parent, *_children(mlflow_client, parent).values()]
    for run in runs:
        assert secret not in json.dumps(run.data.params) + json.dumps(run.data.tags)
        local = Path(download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / run.info.run_id),
                                        tracking_uri=mlflow_client.tracking_uri))
        for path in local.rglob("*"):
            if path.is_file():
                assert secret not in path.read_text(errors="ignore"), path
    assert (tmp_path / parent.info.run_id / "output.ipynb").exists()
    assert secret not in out_nb.read_text()
    logs = run_cli("logs", result["run_id"])
    assert logs.returncode == 0 and "token is ***" in logs.stdout and secret not in logs.stdout
    # nothing under the run store / run directories holds it either
    for path in (nb2prod_home / "runs" / result["run_id"]).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def _all_recorded_text(client, run_id, dst):
    from mlflow.artifacts import download_artifacts

    parent = client.get_run(run_id)
    texts = []
    for run in [parent, *_children(client, parent).values()]:
        texts.append(json.dumps(run.data.params) + json.dumps(run.data.tags))
        local = Path(download_artifacts(run_id=run.info.run_id, dst_path=str(dst / run.info.run_id),
                                        tracking_uri=client.tracking_uri))
        texts += [p.read_text(errors="ignore") for p in local.rglob("*") if p.is_file()]
    return "\n".join(texts)


def test_secret_in_rich_output_is_masked(tmp_path, mlflow_client):
    nb = make_notebook(tmp_path / "rich.ipynb", [
        ("token = 'placeholder'", ["parameters"]),
        ("from IPython.display import display\ndisplay(token)\nn = len(token)\ntoken", ["stage:use"]),
    ])
    out_nb = tmp_path / "out.ipynb"
    record = api.run(nb, RunOptions(parameters={"token": "s3cr3t"}, secrets=["token"], no_cache=True,
                                    output_notebook=str(out_nb)))
    assert record["status"] == "done"
    assert "s3cr3t" not in out_nb.read_text()
    assert "s3cr3t" not in _all_recorded_text(mlflow_client, record["mlflow_run_id"], tmp_path / "dl")


def test_secret_in_exception_message_is_masked(tmp_path, mlflow_client):
    nb = make_notebook(tmp_path / "raise.ipynb", [
        ("token = 'placeholder'", ["parameters"]),
        ("n = len(token)\nraise ValueError('bad token ' + token)", ["stage:use"]),
    ])
    proc = run_cli("run", str(nb), "--no-cache", "--quiet", "--json", "--secret", "token", "-p", "token", "s3cr3t")
    assert proc.returncode == 1
    assert "s3cr3t" not in proc.stdout and "s3cr3t" not in proc.stderr
    result = json.loads(proc.stdout)
    assert "s3cr3t" not in json.dumps(api.get_run(result["run_id"]))
    assert "s3cr3t" not in _all_recorded_text(mlflow_client, result["mlflow_run_id"], tmp_path / "dl")


def test_env_variable_reaches_stage_and_is_never_recorded(tmp_path, mlflow_client):
    import os

    seen = tmp_path / "seen.txt"
    nb = make_notebook(tmp_path / "env.ipynb", [
        (f"import os\nval = os.environ.get('NB2PROD_IT_TOKEN', 'missing')\nopen({str(seen)!r}, 'w').write(val)\n"
         "print('env is', val)\nk = len(val)", ["stage:use"]),
    ])
    env = {**os.environ, "NB2PROD_IT_TOKEN": "envs3cr3t"}
    proc = run_cli("run", str(nb), "--no-cache", "--quiet", "--json", "--env", "NB2PROD_IT_TOKEN", env=env)
    assert proc.returncode == 0, proc.stderr
    assert seen.read_text() == "envs3cr3t"
    result = json.loads(proc.stdout)
    assert "envs3cr3t" not in json.dumps(api.get_run(result["run_id"]))
    assert "envs3cr3t" not in _all_recorded_text(mlflow_client, result["mlflow_run_id"], tmp_path / "dl")
    assert "env is ***" in run_cli("logs", result["run_id"]).stdout
