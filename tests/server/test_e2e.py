"""End to end: real ``jupyter lab`` + headless Debian chromium (Playwright) + the session's Ray cluster.

Open the example notebook, click Productionize, see the DAG, change a parameter, Run, wait for the
Pipelines panel to show every stage done, and check MLflow holds the run with that value. A notebook
with a cycle shows its errors in the dialog; clicking the one pinned to a cell selects that cell.
Schedule… previews a cron expression in words with its next fire times, adds the schedule, and the
panel's Schedules list pauses, resumes, runs it now (the server's own scheduler finishes the fire) and
removes it.
Screenshots go to the test's tmp dir; set NB2PROD_SCREENSHOTS=DIR (e.g. docs/screenshots) to copy them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from nb2prod.scheduling import schedules
from tests.conftest import EXAMPLE, make_notebook
from tests.server.conftest import CYCLE
from tests.server.labserver import CHROMIUM, LabServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.usefixtures("ray_cluster"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]

STAGES = ["load", "split", "train_forest", "train_logreg", "evaluate", "report"]
PRODUCTIONIZE = ".jp-NotebookPanel:not(.lm-mod-hidden) [data-command='nb2prod:productionize']"
SCHEDULE = ".jp-NotebookPanel:not(.lm-mod-hidden) [data-command='nb2prod:schedule']"
QUICK = [("day = 'x'\nn = 1", ["parameters"]), ("out = f'{day}-{n}'\nscore = n", ["stage:only", "metrics"])]


MLFLOW_UI = "http://127.0.0.1:5000"
DARK = {"@jupyterlab/apputils-extension/themes": {"theme": "JupyterLab Dark"}}


@pytest.fixture
def lab(request, tmp_path):
    root = tmp_path / "root"
    (root / "example_notebooks").mkdir(parents=True)
    shutil.copy(EXAMPLE, root / "example_notebooks" / "pipeline.ipynb")
    for name, cells in (("cycle.ipynb", CYCLE), ("quick.ipynb", QUICK)):
        path = make_notebook(root / name, cells)
        nb = json.loads(path.read_text())  # a kernelspec, or Lab asks which kernel to start
        nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path.write_text(json.dumps(nb))
    flavour = getattr(request, "param", "light")  # light | dark | scheduler (the server runs a scheduler)
    args = [f"--Nb2ProdServer.mlflow_ui_url={MLFLOW_UI}"]
    if flavour == "scheduler":
        args.append("--Nb2ProdServer.run_scheduler=True")
    with LabServer(root, tmp_path / "lab", extra_args=args, settings=DARK if flavour == "dark" else None) as server:
        yield server


@pytest.fixture
def page(lab, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            page.screenshot(path=str(tmp_path / "last.png"))
            _wait_idle(page)  # closing while the kernel websocket connects makes the server log a 500
            browser.close()


@pytest.fixture
def shots(tmp_path):
    out = tmp_path / "screenshots"
    out.mkdir()
    saved: list[Path] = []
    yield lambda page, name, **kw: saved.append(_shot(page, out / name, **kw))
    target = os.environ.get("NB2PROD_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in saved:
            shutil.copy(path, Path(target) / path.name)


def _shot(page, path: Path, element: str | None = None) -> Path:
    if element:
        page.locator(element).first.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path))
    return path


def _wait_idle(page) -> None:
    try:
        page.wait_for_selector(".jp-StatusBar-Widget >> text=Idle", timeout=20_000)
    except Exception:  # noqa: BLE001 - best effort before closing
        pass


def _open(page, lab, path: str) -> None:
    page.goto(lab.lab_url(path))
    page.wait_for_selector(PRODUCTIONIZE)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .nb2prod-StageBadge")
    _wait_idle(page)


def test_productionize_runs_the_example_and_tracks_it(lab, page, shots, mlflow_client):
    from nb2prod import api

    _open(page, lab, "example_notebooks/pipeline.ipynb")
    badges = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .nb2prod-StageBadge[data-role='stage']")
    assert sorted(badges.all_text_contents()) == sorted(STAGES)

    started = time.monotonic()
    page.click(PRODUCTIONIZE)
    page.wait_for_function("document.querySelectorAll('.nb2prod-Dag .nb2prod-Dag-node').length === 6")
    latency = time.monotonic() - started
    nodes = page.locator(".nb2prod-Dag .nb2prod-Dag-node").evaluate_all("ns => ns.map(n => n.dataset.stage)")
    assert sorted(nodes) == sorted(STAGES)
    assert page.locator(".nb2prod-Dag .nb2prod-Dag-edge").count() == 8
    assert page.input_value("input[data-param='n_estimators']") == "100"

    page.fill("input[data-param='n_estimators']", "2.5")
    assert page.locator(".jp-Dialog .jp-mod-accept").is_disabled()  # validated before submit
    page.fill("input[data-param='n_estimators']", "23")
    assert page.locator(".jp-Dialog .jp-mod-accept").is_enabled()
    page.check("input[name='no_cache']")  # other tests in the session may have cached the example's stages
    shots(page, "productionize-dialog.png", element=".jp-Dialog-content")
    page.click(".jp-Dialog .jp-mod-accept")

    run = page.locator(".nb2prod-Run").first
    run.wait_for()
    run_id = run.get_attribute("data-run-id")
    page.wait_for_function(
        """id => {
             const run = document.querySelector(`.nb2prod-Run[data-run-id="${id}"]`);
             if (!run || run.dataset.status === 'failed') return run !== null;
             const rows = [...run.querySelectorAll('.nb2prod-Stage')];
             return run.dataset.status === 'done' && rows.length === 6 && rows.every(r => r.dataset.status === 'done');
           }""",
        arg=run_id, timeout=240_000)
    shots(page, "pipelines-panel.png")
    assert page.get_attribute(f".nb2prod-Run[data-run-id='{run_id}']", "data-status") == "done", lab.log()

    record = api.get_run(run_id)
    assert record["origin"] == "server" and record["parameters"]["n_estimators"] == 23
    assert mlflow_client.get_run(record["mlflow_run_id"]).data.params["n_estimators"] == "23"
    link = page.get_attribute(f".nb2prod-Run[data-run-id='{run_id}'] a.nb2prod-MlflowLink", "href")
    assert link == f"{MLFLOW_UI}/#/experiments/{record['mlflow_experiment_id']}/runs/{record['mlflow_run_id']}"
    print(f"click -> DAG shown: {latency:.2f} s")


@pytest.mark.parametrize("lab", ["dark"], indirect=True)  # the dark theme, for the screenshot
def test_cycle_is_shown_in_the_dialog_and_errors_select_their_cell(lab, page, shots):
    _open(page, lab, "cycle.ipynb")
    page.click(PRODUCTIONIZE)
    issues = page.locator(".nb2prod-Issues.nb2prod-mod-error .nb2prod-Issue")
    issues.first.wait_for()
    texts = issues.all_text_contents()
    assert any("cycle" in t for t in texts), texts
    assert page.locator(".jp-Dialog .jp-mod-accept").is_disabled()
    shots(page, "productionize-errors.png", element=".jp-Dialog-content")

    page.locator(".nb2prod-Issue", has_text="'missing'").click()
    page.wait_for_selector(".jp-Dialog", state="detached")
    active = page.evaluate("""() => [...document.querySelectorAll(
        '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')].findIndex(
        c => c.classList.contains('jp-mod-active'))""")
    assert active == 3

    # "Mark as stage…" from the command palette tags the active cell and its badge appears.
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(2).click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type("Mark as Stage")
    page.keyboard.press("Enter")
    page.locator(".jp-Dialog input").fill("printing")
    page.keyboard.press("Enter")
    badge = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(2).locator(".nb2prod-StageBadge")
    badge.wait_for()
    assert badge.text_content() == "printing"


@pytest.fixture
def no_schedules_left():
    yield
    for row in schedules.list_all():
        schedules.remove(row["name"])


@pytest.mark.parametrize("lab", ["scheduler"], indirect=True)
def test_schedule_dialog_previews_adds_and_the_panel_manages_the_schedule(lab, page, shots, no_schedules_left):
    from nb2prod import api

    _open(page, lab, "quick.ipynb")
    page.click(SCHEDULE)
    preview = page.locator(".nb2prod-Schedule-preview")
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    preview.locator(".nb2prod-Schedule-description").wait_for()

    page.fill("input[name='cron']", "61 2 * * *")
    page.wait_for_selector(".nb2prod-Schedule-preview.nb2prod-mod-error >> text=invalid cron expression")
    assert accept.is_disabled()
    page.fill("input[name='cron']", "30 2 * * 1-5")
    page.fill("input[name='tz']", "Europe/Paris")
    page.wait_for_selector(".nb2prod-Schedule-description >> text=At 02:30, Monday through Friday (Europe/Paris)")
    times = preview.locator(".nb2prod-Schedule-times li").all_text_contents()
    assert len(times) == 5 and all("02:30" in t for t in times), times
    page.fill("input[name='name']", "bad name")
    assert accept.is_disabled()
    page.fill("input[name='name']", "nightly-quick")
    page.fill("input[data-param='n']", "7")
    page.fill("input[data-param='day']", "{{ scheduled_time - 1d:%Y-%m-%d }}")
    page.select_option("select[name='catchup']", "latest")
    page.fill("input[name='retries']", "1")
    page.fill("input[name='gates']", "score>=5, score<10")
    assert accept.is_enabled()
    shots(page, "schedule-dialog.png", element=".jp-Dialog-content")
    accept.click()

    row = page.locator(".nb2prod-Schedule-row[data-name='nightly-quick']")
    row.wait_for()
    assert page.locator(".nb2prod-Schedules-warning").text_content() == ""  # the server runs a scheduler
    stored = schedules.show("nightly-quick")
    assert (stored["cron"], stored["timezone"], stored["catchup"], stored["retries"]) == \
        ("30 2 * * 1-5", "Europe/Paris", "latest", 1)
    assert stored["parameters"] == {"n": "7", "day": "{{ scheduled_time - 1d:%Y-%m-%d }}"}
    assert stored["options"]["gates"] == ["score>=5", "score<10"]
    assert "At 02:30, Monday through Friday" in row.text_content()

    row.locator("[data-action='pause']").click()
    page.wait_for_selector(".nb2prod-Schedule-row[data-name='nightly-quick'][data-paused='true']")
    assert schedules.show("nightly-quick")["paused"] is True
    row.locator("[data-action='resume']").click()
    page.wait_for_selector(".nb2prod-Schedule-row[data-name='nightly-quick'][data-paused='false']")

    row.locator("[data-action='run-now']").click()  # the server's scheduler watches the fire to its end
    page.wait_for_selector(".nb2prod-Schedule-row[data-name='nightly-quick'][data-last-status='done']",
                           timeout=180_000)
    fire = schedules.show("nightly-quick")["fires"][0]
    page.wait_for_selector(f".nb2prod-Run[data-run-id='{fire['run_id']}'][data-status='done']")
    row.locator(".nb2prod-Schedule-head").click()  # the fire history; a fire's row shows its run
    history = row.locator(f".nb2prod-Fire[data-run-id='{fire['run_id']}'][data-status='done']")
    history.wait_for()
    history.click()
    page.wait_for_selector(f".nb2prod-Run[data-run-id='{fire['run_id']}'] .nb2prod-Run-head[aria-expanded='true']")
    shots(page, "pipelines-schedules.png")
    record = api.get_run(fire["run_id"])
    assert record["origin"] == "scheduler" and record["parameters"]["n"] == 7
    assert record["gate"]["status"] == "passed", record["gate"]  # the schedule's gates, on score = n = 7
    assert record["parameters"]["day"] == fire["parameters"]["day"] != "{{ scheduled_time - 1d:%Y-%m-%d }}"

    row.locator("[data-action='remove']").click()
    page.click(".jp-Dialog .jp-mod-accept")
    row.wait_for(state="detached")
    assert schedules.list_all() == []
