"""What a run refuses before anything runs (no Ray needed): an output notebook that cannot be written, resuming a
run of another notebook, a drift reference naming no run, --downstream without --stage — a clear message, exit 2
on the command line; so does `cluster up` asked to size a cluster that already runs. An address where no cluster
answers fails at once, an error inside the coordinator is named, a cancel of a run that ended says so."""

from __future__ import annotations

import json

import pytest

from nb2prod import api
from nb2prod.contracts import RunOptions
from nb2prod.errors import UsageError
from nb2prod.store import runs as store
from tests.conftest import make_notebook, run_cli


@pytest.fixture
def notebook(tmp_path, nb2prod_home):
    return make_notebook(tmp_path / "refuse.ipynb", [("x = 1  # refusals", ["stage:one"])])


@pytest.mark.parametrize("where", ["a directory", "a missing parent"])
def test_an_output_notebook_that_cannot_be_written_is_refused(notebook, tmp_path, where):
    bad = tmp_path if where == "a directory" else tmp_path / "missing" / "out.ipynb"
    with pytest.raises(UsageError, match="--output-notebook"):
        api.run(notebook, RunOptions(output_notebook=str(bad)))
    with pytest.raises(UsageError, match="--output-notebook"):
        api.start_run(notebook, RunOptions(output_notebook=str(bad)))
    assert api.list_runs(notebook) == []  # nothing ran, nothing was recorded
    refused = run_cli("run", str(notebook), "--output-notebook", str(tmp_path / "missing" / "out.ipynb"))
    assert refused.returncode == 2 and "does not exist" in refused.stderr and "Traceback" not in refused.stderr


def test_an_output_notebook_inside_a_file_is_refused_as_such(notebook):
    with pytest.raises(UsageError, match=f"--output-notebook {notebook}/out.ipynb: {notebook} is a file, not a dir"):
        api.run(notebook, RunOptions(output_notebook=f"{notebook}/out.ipynb"))


def test_an_output_notebook_that_would_replace_the_notebook_is_refused(notebook, tmp_path):
    link = tmp_path / "link.ipynb"
    link.symlink_to(notebook)
    for target in (notebook, link):
        with pytest.raises(UsageError, match="is the notebook being run"):
            api.start_run(notebook, RunOptions(output_notebook=str(target)))
    assert api.list_runs(notebook) == []


def test_resuming_a_run_of_another_notebook_is_refused(notebook, tmp_path):
    other = make_notebook(tmp_path / "other.ipynb", [("y = 1  # other", ["stage:one"])])
    run_id = store.new_run_id()
    store.create_run(run_id, str(other), {"one": None})
    with pytest.raises(UsageError, match="is a run of"):
        api.run(notebook, RunOptions(resume_from=run_id))
    assert api.list_runs(notebook) == []
    refused = run_cli("run", str(notebook), "--resume", run_id)
    assert refused.returncode == 2 and "is a run of" in refused.stderr and "Traceback" not in refused.stderr


def test_an_error_inside_the_coordinator_is_named_not_called_a_lost_coordinator(ray_cluster, tmp_path):
    nb = make_notebook(tmp_path / "nb.ipynb", [("x = 1", ["stage:one"])])
    unusable = tmp_path / "file"
    unusable.write_text("not a directory")  # the MLflow store's directory is a file: the coordinator cannot open it
    proc = run_cli("run", str(nb), "--tracking-uri", f"sqlite:///{unusable / 'mlflow.db'}", "--no-cache", "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "the run's coordinator failed:" in proc.stderr and "was lost" not in proc.stderr, proc.stderr
    # an error Ray cannot send back as it is (MLflow's unsupported-URI error does not unpickle): named all the same
    proc = run_cli("run", str(nb), "--tracking-uri", "bogus://x", "--no-cache", "--quiet")
    assert proc.returncode == 1 and "was lost" not in proc.stderr, proc.stderr
    assert "the run's coordinator failed: UnsupportedModelRegistryStoreURIException:" in proc.stderr
    assert "'bogus://x'" in proc.stderr


def test_cluster_up_refuses_sizing_a_running_cluster(nb2prod_home):
    proc = run_cli("cluster", "up", "--ray-address", "127.0.0.1:6379", "--num-cpus", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--num-cpus and --num-gpus size the local cluster" in proc.stderr


def test_an_address_where_no_cluster_answers_fails_at_once(notebook, tmp_path):
    """Ray itself retries such an address for minutes, printing only its own warnings."""
    from tests.conftest import free_port

    address = f"127.0.0.1:{free_port()}"
    for command in (["run", str(notebook), "--ray-address", address], ["cluster", "up", "--ray-address", address]):
        refused = run_cli(*command, timeout=60)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert f"cannot connect to the Ray cluster at {address}: nothing answers there" in refused.stderr


def test_a_drift_reference_that_names_no_run_is_refused(notebook):
    for reference in ("nosuchrun", "2e_7"):
        refused = run_cli("run", str(notebook), "--drift-reference", reference)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert f"--drift-reference {reference}: not champion, previous, a run in the run store" in refused.stderr
    assert api.list_runs(notebook) == []


def test_downstream_without_a_stage_is_refused(notebook):
    refused = run_cli("run", str(notebook), "--downstream")
    assert refused.returncode == 2 and "--downstream extends --stage" in refused.stderr, refused.stderr


def test_cancelling_a_run_that_ended_says_there_is_nothing_to_cancel(nb2prod_home):
    from nb2prod.core.status import RunStatus

    run_id = store.new_run_id()
    store.create_run(run_id, "/nb/ended.ipynb", {"one": None})
    store.finish_run(run_id, RunStatus.DONE, None)
    told = run_cli("cancel", run_id)
    assert told.returncode == 0 and f"run {run_id} already ended (done); nothing to cancel" in told.stdout
    assert store.get_run(run_id)["status"] == "done"


def test_status_json_of_an_unknown_run_is_one_json_error_and_runs_wants_a_positive_limit(nb2prod_home):
    unknown = run_cli("status", "nosuch", "--json")
    assert unknown.returncode == 1 and json.loads(unknown.stdout) == {"error": "no run 'nosuch'", "kind": "RunNotFound"}
    assert run_cli("runs", "-n", "-5").returncode == 2


def test_logs_of_an_empty_stage_name_is_refused(nb2prod_home):
    run_id = store.new_run_id()
    store.create_run(run_id, "/nb/logs.ipynb", {"one": None})
    refused = run_cli("logs", run_id, "")
    assert refused.returncode == 2 and f"run {run_id} has no stage ''" in refused.stderr


def test_a_path_no_file_can_have_is_an_error_not_a_traceback(tmp_path):
    (tmp_path / "loop-a").symlink_to("loop-b")
    (tmp_path / "loop-b").symlink_to("loop-a")
    for args in (("check", "loop-a"), ("run", "loop-a"), ("runs", "loop-a"), ("schedule", "add", "x", "loop-a",
                                                                              "--cron", "@daily")):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode in (1, 2) and "'loop-a' is not a usable path: a symlink loop" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
