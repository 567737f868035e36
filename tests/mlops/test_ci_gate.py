"""The CI gate end to end: ``nb2prod ci`` on its own throw-away cluster and store, its JUnit file parsed back,
and the ``nb2prod-check`` hook run by pre-commit itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import ROOT, make_notebook, run_cli

pytestmark = pytest.mark.slow


def test_ci_runs_stages_and_gates_into_junit(tmp_path, nb2prod_home):
    nb = make_notebook(tmp_path / "train.ipynb", [
        ("n = 3", ["parameters"]),
        ("acc = 0.5 + n / 100", ["stage:fit", "metrics", "gate:acc>=0.4"]),
        ("report = acc * 2", ["stage:report"]),
    ])
    (tmp_path / "ci.yaml").write_text("n: 5\n")
    report = tmp_path / "junit.xml"
    home_before = sorted(p.name for p in nb2prod_home.iterdir())
    result = run_cli("ci", str(nb), "-f", str(tmp_path / "ci.yaml"), "--gate", "acc>=0.9", "--junit", str(report),
                     timeout=900)
    assert result.returncode == 1, result.stderr
    suite = ET.parse(report).getroot().find("testsuite")
    cases = {(c.get("classname").split(".")[-1], c.get("name")): c for c in suite.findall("testcase")}
    assert set(cases) == {("check", "check"), ("stages", "fit"), ("stages", "report"), ("gates", "acc>=0.4"),
                          ("gates", "acc>=0.9")}
    assert cases[("gates", "acc>=0.4")].find("failure") is None
    assert cases[("gates", "acc>=0.9")].find("failure").get("message") == "acc 0.55 < 0.9"  # n from ci.yaml
    assert all(cases[k].find("failure") is None for k in [("check", "check"), ("stages", "fit"), ("stages", "report")])
    assert suite.get("failures") == "1" and suite.get("tests") == "5"
    assert sorted(p.name for p in nb2prod_home.iterdir()) == home_before  # the session's state is untouched
    assert "nb2prod ci: 4 passed, 1 failed" in result.stderr


def test_ci_failing_stage_fails_and_skips_downstream(tmp_path):
    nb = make_notebook(tmp_path / "broken.ipynb", [
        ("x = 1", ["stage:a"]),
        ("y = x / 0", ["stage:b"]),
        ("z = y + 1", ["stage:c"]),
    ])
    report = tmp_path / "junit.xml"
    result = run_cli("ci", str(nb), "--junit", str(report), timeout=900)
    assert result.returncode == 1
    cases = {c.get("name"): c for c in ET.parse(report).getroot().iter("testcase")}
    assert "ZeroDivisionError" in cases["b"].find("failure").get("message")
    assert "cell 1" in cases["b"].find("failure").get("message")
    assert cases["c"].find("skipped") is not None and cases["a"].find("failure") is None


@pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git")
def test_pre_commit_hook_checks_changed_notebooks(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    make_notebook(repo / "good.ipynb", [("x = 1", ["stage:a"]), ("y = x", ["stage:b"])])
    make_notebook(repo / "bad.ipynb", [("y = x", ["stage:a", "register:model"])])
    # a system hook: the nb2prod of the environment one commits from, here this interpreter's
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    hook = [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "nb2prod-check"]
    bad = subprocess.run([*hook, "--files", "good.ipynb", "bad.ipynb"], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "bad.ipynb" in bad.stdout and "reads 'x'" in bad.stdout and "cell 0" in bad.stdout
    good = subprocess.run([*hook, "--files", "good.ipynb"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
