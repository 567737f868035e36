"""``%nb2prod run|pull|status|runs|params`` against the session's real Ray cluster and MLflow store, in real
kernels: the headless text fallback, and a notebook that productionizes itself with live widgets."""

from __future__ import annotations

import json
import re

import pytest

from tests.magics.conftest import Widgets, data, errors, execute, failure, pipeline_cells, text, write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]



def report(path) -> str:
    """A cell printing the notebook's runs as JSON."""
    return ("import json\nfrom nb2prod import api\n"
            "print(json.dumps([{'id': r['id'], 'status': r['status'], 'parameters': r['parameters'], "
            f"'stages': {{n: s['status'] for n, s in r['stages'].items()}}}} for r in api.list_runs({str(path)!r})]))")


def _runs(cell) -> list[dict]:
    """The report cell's run list, oldest first."""
    return list(reversed(json.loads(text(cell).strip().splitlines()[-1])))


def test_headless_text_fallback_stage_and_pull(tmp_path, pipeline):
    """Under nbclient (no JPY_SESSION_NAME): PATH required, --wait by default, plain text lines."""
    nb = write_notebook(tmp_path / "driver.ipynb", [
        "%load_ext nb2prod",                                                          # 0
        f"%nb2prod run {pipeline} -p scale 3 --log-output",                           # 1
        f"%nb2prod pull second --path {pipeline}\nprint('b =', b)",                   # 2
        (f"%nb2prod pull first zz --path {pipeline}", ["raises-exception"]),          # 3
        f"%nb2prod run {pipeline} --stage third -p scale 3",                          # 4
        f"%nb2prod run {pipeline} --stage second --downstream -p scale 4",            # 5
        f"%nb2prod pull second b --path {pipeline}\nprint('b =', b)",                 # 6
        f"%nb2prod runs {pipeline}",                                                  # 7
        "%nb2prod status",                                                            # 8
        (f"%nb2prod run {pipeline} -p fail True", ["raises-exception"]),              # 9
        f"%nb2prod run {pipeline} --no-wait",                                         # 10
        "import nb2prod.notebook.magics\nfrom nb2prod import api\nimport time\nrid = nb2prod.notebook.magics.last_view().run_id\n"
        "while api.get_run(rid)['status'] == 'running':\n    time.sleep(0.2)\nprint(api.get_run(rid)['status'])",
        report(pipeline),                                            # 12
    ])
    cells = execute(nb).cells
    first = text(cells[1])
    assert re.search(r"^\[nb2prod\] run \S+: 3 stage\(s\) of chain.ipynb$", first, re.M)
    for stage in ("first", "second", "third"):
        assert re.search(rf"^\[nb2prod\] {stage}: done in \d+\.\d\ds$", first, re.M), first
    assert re.search(r"^\[nb2prod\] run \S+ done in \d+\.\d\ds — MLflow run [0-9a-f]{32} at sqlite:", first, re.M)
    assert "[second] scaling by" in first and "[third] " in first  # --log-output (fragment order is the runner's)
    assert not data(cells[1], "application/vnd.jupyter.widget-view+json")

    assert "b = [0, 3, 6, 9, 12]" in text(cells[2])
    assert re.search(r"pulled b from stage 'second' of run \S+", text(cells[2]))
    assert failure(cells[3]).startswith("UsageError: %nb2prod pull: stage 'first' of run")
    assert "no output zz; its outputs: a" in failure(cells[3])

    assert "b = [0, 4, 8, 12, 16]" in text(cells[6])  # the --downstream run (scale 4) is the latest success
    table = text(cells[7]) + "".join(data(cells[7], "text/plain"))
    assert "runs of chain.ipynb" in table and len(re.findall(r"[0-9a-f]{32}", table)) >= 3
    status = "".join(data(cells[8], "text/plain")) + text(cells[8])
    assert re.search(r"run \S+ done", status) and "third" in status

    failed = text(cells[9])
    assert "[nb2prod] second: failed" in failed
    assert "[nb2prod] second failed: cell 2, line 3: ValueError: boom" in failed
    assert re.search(r"run \S+ failed", failed)
    assert re.fullmatch(r"error: run \S+ failed: stage 'second': ValueError: boom\n", failure(cells[9]))
    assert "started in the background; `%nb2prod status" in text(cells[10])
    assert text(cells[11]).strip().endswith("done")

    runs = _runs(cells[12])
    assert [r["status"] for r in runs] == ["done", "done", "done", "failed", "done"]
    assert runs[0]["stages"] == {"first": "done", "second": "done", "third": "done"}
    # --stage third: only third ran, its inputs came from the latest successful run
    assert runs[1]["stages"] == {"first": "cached", "second": "cached", "third": "done"}
    # --stage second --downstream: second and third ran
    assert runs[2]["stages"] == {"first": "cached", "second": "done", "third": "done"}
    assert runs[3]["stages"]["second"] == "failed"
    for cell in cells[:3] + cells[4:9] + cells[10:]:
        assert not errors(cell)


def test_stage_without_an_earlier_run_says_so(tmp_path):
    pipeline = write_notebook(tmp_path / "chain.ipynb", [("seed = 7", ["parameters"]),
                                                         (f"a = [seed] * 3  # {tmp_path.name}", ["stage:first"]),
                                                         ("b = a * 2", ["stage:second"]),
                                                         ("c = sum(b)", ["stage:third"])])
    nb = write_notebook(tmp_path / "driver.ipynb", [
        "%load_ext nb2prod", (f"%nb2prod run {pipeline} --stage third", ["raises-exception"]),
        (f"%nb2prod pull third --path {pipeline}", ["raises-exception"])])
    cells = execute(nb).cells
    err = failure(cells[1])
    assert err.startswith("error: cannot take the inputs of the selected stage(s) from upstream stage 'second'")
    assert err.count("\n") == 1
    assert failure(cells[2]).startswith("UsageError: %nb2prod pull: no run of chain.ipynb has a successful "
                                               "stage 'third' yet")


def test_notebook_productionizes_itself_with_live_widgets(tmp_path):
    """A Jupyter-server kernel (JPY_SESSION_NAME): PATH is the notebook itself, runs return at once and
    the widget models (as recorded from the comm messages) show every stage."""
    nb = write_notebook(tmp_path / "self.ipynb", [
        ("%load_ext nb2prod", ["skip"]),                                                       # 0
        *pipeline_cells(tmp_path.name),                                                        # 1-4
        ("%nb2prod run -p fail True --wait", ["skip", "raises-exception"]),                    # 5
        ("%nb2prod run\nimport nb2prod.notebook.magics\nfrom nb2prod import api\n"
         "print('at return:', api.get_run(nb2prod.notebook.magics.last_view().run_id)['status'])", ["skip"]),  # 6
        ("import time\nassert nb2prod.notebook.magics.last_view().wait(180)\ntime.sleep(0.3)\n"
         "print('final:', nb2prod.notebook.magics.last_view().status)", ["skip"]),                    # 7
        ("%nb2prod params", ["skip"]),                                                         # 8
        ("form = get_ipython().magics_manager.registry['Nb2ProdMagics'].last_form\n"
         "form.fields['scale'].value = 10\nform.button.click()\n"
         "assert nb2prod.notebook.magics.last_view().wait(180)\ntime.sleep(0.3)", ["skip"]),          # 9
        ("%nb2prod pull second\nprint('b =', b)", ["skip"]),                                 # 10
        ("%nb2prod runs", ["skip"]),                                                           # 11
        ("%nb2prod status", ["skip"]),                                                         # 12
        (report(tmp_path / "self.ipynb"), ["skip"]),                          # 13
    ])
    done = execute(nb, session=True, env={"NB2PROD_MLFLOW_UI_URL": "http://mlflow.test:5000"})
    cells, widgets = done.cells, Widgets(done)
    for cell in cells[:5] + cells[6:]:
        assert not errors(cell)
    (shown,) = errors(cells[5])
    assert re.fullmatch(r"error: run \S+ failed: stage 'second': ValueError: boom", "\n".join(shown["traceback"]))
    assert "b = [0, 10, 20, 30, 40]" in text(cells[10])  # the form's run (scale 10), not the interactive b

    # the failing foreground run: warned about unsaved edits, second failed with its cell, line and output
    assert "warning: self.ipynb on disk is older than this kernel's last execution" in text(cells[5], "stderr")
    (failed,) = widgets.displayed(cells[5])
    assert "nb2prod-run" in widgets.model(failed)["state"]["_dom_classes"]
    assert widgets.run_status(failed) == "failed"
    statuses = widgets.stage_statuses(failed)
    assert statuses["first"] in ("done", "cached") and statuses["second"] == "failed"
    (accordion,) = [m for m in widgets.with_class(failed, "nb2prod-stage-error")
                    if m["state"].get("selected_index") == 0]
    assert accordion["state"]["titles"][0] == "second failed — cell 3, line 3"
    detail = widgets.html(failed)
    assert 'data-stage="second" data-cell="3" data-line="3"' in detail and "ValueError</b>: boom" in detail
    assert "captured output:" in detail and "scaling by 2" in detail
    assert re.search(r'<a href="http://mlflow.test:5000/#/experiments/\d+/runs/[0-9a-f]{32}"', detail)

    # the background run: returned while running, the follower thread drove the widgets to the end
    assert "at return: running" in text(cells[6])
    assert "final: done" in text(cells[7])
    (live,) = widgets.displayed(cells[6])
    assert widgets.run_status(live) == "done"
    assert widgets.stage_statuses(live) == {"first": "cached", "second": "done", "third": "done"}
    bars = [m["state"] for m in widgets.walk(live) if m["model_name"] == "IntProgressModel"]
    assert [(b["value"], b["bar_style"]) for b in bars] == [(2, "info"), (2, "success"), (2, "success")]
    assert "nb2prod-stage-third" in str([m["state"].get("_dom_classes") for m in widgets.walk(live)])

    # the form's Run button started a run with its values
    (form,) = widgets.displayed(cells[8])
    views = [i for i in widgets.ids(form) if "nb2prod-run" in widgets.model(i)["state"].get("_dom_classes", [])]
    assert len(views) == 1 and widgets.run_status(views[0]) == "done"
    runs = _runs(cells[13])
    assert [r["status"] for r in runs] == ["failed", "done", "done"]
    assert runs[2]["parameters"]["scale"] == 10

    assert "runs of self.ipynb" in data(cells[11], "text/html")[0]
    (status,) = widgets.displayed(cells[12])
    assert widgets.run_status(status) == "done"


def test_example_notebook_productionizes_itself(example_notebook):
    """The shipped example, with the magics added in ``skip`` cells, checks and runs itself."""
    import nbformat
    from nbformat.v4 import new_code_cell

    nb = nbformat.read(example_notebook, as_version=4)
    nb.cells.insert(0, new_code_cell("%load_ext nb2prod", metadata={"tags": ["skip"]}))
    nb.cells += [new_code_cell("%nb2prod check", metadata={"tags": ["skip"]}),
                 new_code_cell("%nb2prod run -p n_estimators 20 --wait", metadata={"tags": ["skip"]})]
    nbformat.write(nb, example_notebook)
    done = execute(example_notebook, session=True)
    widgets = Widgets(done)
    check, run = done.cells[-2], done.cells[-1]
    assert not errors(check) and not errors(run)
    assert "ok: 6 stage(s)" in data(check, "text/html")[0]
    (view,) = widgets.displayed(run)
    assert widgets.run_status(view) == "done"
    assert widgets.stage_statuses(view) == dict.fromkeys(
        ["load", "split", "train_forest", "train_logreg", "evaluate", "report"], "done")
