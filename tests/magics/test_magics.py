"""``%%stage`` and the ``%nb2prod`` magics that start no run, through a real kernel (nbclient)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.magics.conftest import Widgets, data, errors, execute, failure, pipeline_cells, text, write_notebook


INVALID = [
        ("x = 1", ["stage:first", "after:second"]),
        ("y = x", ["stage:second"]),
        ("z = missing + 1", ["stage:third"]),
]  # a cycle (no cell) and an undefined name in cell 2


@pytest.fixture(scope="module")
def headless(tmp_path_factory):
    """One headless kernel (no JPY_SESSION_NAME: the text fallback) running every non-run magic."""
    tmp_path = tmp_path_factory.mktemp("magics")
    pipeline = write_notebook(tmp_path / "chain.ipynb", pipeline_cells(tmp_path.name))
    invalid = write_notebook(tmp_path / "invalid.ipynb", INVALID)
    nb = write_notebook(tmp_path / "driver.ipynb", [
        "%load_ext nb2prod",                                                      # 0
        "%%stage first --after zero --gpu --retries 2 --memory 1G\nx = 41\nx + 1",  # 1
        "print('x is', x)",                                                        # 2
        ("%%stage first --retries many\nx = 0", ["raises-exception"]),              # 3
        ("%%stage 'bad name!'\nx = 0", ["raises-exception"]),                       # 4
        "print('x still', x)",                                                     # 5
        ("%%stage boom\ny = 1\n1 / 0", ["raises-exception"]),                       # 6
        f"%nb2prod check {pipeline}",                                              # 7
        f"%nb2prod check {invalid}",                                               # 8
        ("%nb2prod run", ["raises-exception"]),                                     # 9
        (f"%nb2prod run {pipeline} --bogus", ["raises-exception"]),                 # 10
        (f"%nb2prod run {pipeline} -p nope 1", ["raises-exception"]),               # 11
        (f"%nb2prod run {invalid}", ["raises-exception"]),                          # 12
        ("%nb2prod frob", ["raises-exception"]),                                    # 13
        f"%nb2prod params {pipeline}",                                             # 14
        ("%nb2prod pull first --run no-such-run", ["raises-exception"]),            # 15
        ("%nb2prod pull first", ["raises-exception"]),                              # 16
        "%nb2prod",                                                                # 17
        "%nb2prod run --help",                                                     # 18
        ("%nb2prod check /no/such/notebook.ipynb", ["raises-exception"]),           # 19
        ("%nb2prod run 'unclosed", ["raises-exception"]),                           # 20
        ("%nb2prod runs --all --limit -5", ["raises-exception"]),                   # 21
        (f"%nb2prod run {pipeline} -p scale", ["raises-exception"]),               # 22
        (f"%nb2prod params {pipeline} -p scale 3.7", ["raises-exception"]),        # 23
        f"%nb2prod params {pipeline} -p scale 7",                                  # 24
        f"%nb2prod params {pipeline} -p scale 9753 --secret scale",                # 25
    ])
    return execute(nb)


def test_stage_runs_the_body_in_the_user_namespace(headless):
    cells = headless.cells
    assert data(cells[1], "text/plain") == ["42"]
    assert text(cells[2]) == "x is 41\n"
    assert not errors(cells[1])


def test_stage_bad_options_are_one_line_usage_errors(headless):
    cells = headless.cells
    for i, expected in ((3, "invalid int value: 'many'"), (4, "use letters, digits")):
        err = failure(cells[i])
        assert err.startswith("UsageError: %%stage") and expected in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert text(cells[5]) == "x still 41\n"  # the body of a bad %%stage did not run


def test_stage_errors_show_as_usual(headless):
    (error,) = errors(headless.cells[6])
    assert error["ename"] == "ZeroDivisionError"
    assert "1 / 0" in text({"outputs": [{"output_type": "stream", "name": "x", "text": "\n".join(error["traceback"])}]},
                           "x")


def test_check_draws_the_dag_with_variables(headless):
    cell = headless.cells[7]
    (page,) = data(cell, "text/html")
    assert page.count('<g class="nb2prod-node"') == 3 and "<svg" in page
    assert 'data-from="first" data-to="second"' in page and 'data-from="second" data-to="third"' in page
    assert "first → second: a" in page and "second → third: b" in page
    (plain,) = data(cell, "text/plain")
    assert "ok: 3 stage(s), 2 edge(s)" in plain and "first -> second: a" in plain
    assert "scale=2 (int)" in plain


def test_check_shows_validation_errors_with_cells(headless):
    (page,) = data(headless.cells[8], "text/html")
    (plain,) = data(headless.cells[8], "text/plain")
    assert 'class="nb2prod-errors"' in page and 'data-cell="2"' in page
    assert "cell 2" in plain and "missing" in plain and "cycle" in plain.lower()


@pytest.mark.parametrize("index, expected", [
    (9, "UsageError: %nb2prod run: no notebook PATH given"),
    (10, "UsageError: %nb2prod run: No such option '--bogus'"),
    (11, "UsageError: %nb2prod run: unknown parameter"),
    (12, "error: invalid.ipynb is not a valid pipeline"),
    (13, "UsageError: %nb2prod: No such command 'frob'"),
    (15, "error: "),
    (16, "UsageError: %nb2prod pull: no notebook PATH given"),
    (19, "error: /no/such/notebook.ipynb: no such file"),
    (20, "UsageError: %nb2prod: No closing quotation"),
    (21, "UsageError: %nb2prod runs: Invalid value for '--limit': -5 is not in the range x>=1"),
    (22, "UsageError: %nb2prod run: Option '-p' requires 2 arguments"),
    (23, "UsageError: %nb2prod params: parameter 'scale' expects int"),
])
def test_errors_fail_the_cell_with_one_line(headless, index, expected):
    cell = headless.cells[index]
    err = failure(cell)
    assert err.startswith(expected), err
    assert "Traceback" not in err
    if index != 12:  # the validation error lists its problems, one per line
        assert err.count("\n") == 1, err


def test_params_without_widgets_is_text(headless):
    out = text(headless.cells[14])
    assert "scale" in out and "int" in out and "fail" in out and "bool" in out
    assert not data(headless.cells[14], "application/vnd.jupyter.widget-view+json")
    assert "scale                int    7 (given)" in text(headless.cells[24])
    assert "scale                int    '***' (given)" in text(headless.cells[25])  # a secret is never shown
    assert "9753" not in text(headless.cells[25])


def test_help(headless):
    overview = text(headless.cells[17])
    for command in ("%%stage NAME", "%nb2prod check", "%nb2prod run", "%nb2prod params", "%nb2prod pull",
                    "%nb2prod status", "%nb2prod runs"):
        assert command in overview
    run_help = text(headless.cells[18])
    for option in ("--parameter", "--stage", "--downstream", "--wait / --no-wait", "--ray-address", "--no-cache",
                   "--secret", "--requirements"):
        assert option in run_help


def test_import_nb2prod_does_not_import_ipython():
    code = "import sys, nb2prod; print('IPython' in sys.modules, 'nb2prod.notebook.magics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_question_mark_help(tmp_path):
    """``%nb2prod?`` pages the overview (an execute_reply payload, which nbclient does not record)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        assert kc.execute_interactive("%load_ext nb2prod", timeout=60)["content"]["status"] == "ok"
        reply = kc.execute_interactive("%nb2prod?", timeout=60)
        pages = [p["data"]["text/plain"] for p in reply["content"].get("payload", []) if p.get("source") == "page"]
        assert pages and "%nb2prod pull STAGE" in pages[0] and "%%stage NAME" in pages[0]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_params_form_in_a_jupyter_kernel(tmp_path):
    """With JPY_SESSION_NAME (a Jupyter server kernel) PATH defaults to the notebook and params is a form."""
    nb = write_notebook(tmp_path / "self.ipynb", [("%load_ext nb2prod", ["skip"]), *pipeline_cells(tmp_path.name),
                                                  ("%nb2prod params -p scale 5", ["skip"]),
                                                  ("%nb2prod check", ["skip"]),
                                                  ("%nb2prod params -p fail abc", ["skip", "raises-exception"])])
    done = execute(nb, session=True)
    widgets = Widgets(done)
    form_cell, check_cell = done.cells[-3], done.cells[-2]
    assert "parameter 'fail' expects bool" in failure(done.cells[-1])  # a -p value the form cannot show
    (form,) = widgets.displayed(form_cell)
    fields = {m["state"]["description"]: m for m in widgets.walk(form) if m["state"].get("description")}
    assert fields["scale"]["model_name"] == "IntTextModel" and fields["scale"]["state"]["value"] == 5
    assert fields["fail"]["model_name"] == "CheckboxModel" and fields["fail"]["state"]["value"] is False
    assert fields["Run"]["model_name"] == "ButtonModel"
    assert "nb2prod-params" in widgets.model(form)["state"]["_dom_classes"]
    assert "ok: 3 stage(s)" in data(check_cell, "text/html")[0]
