"""A cluster coming up: its keeper warms the workers of the first run's parallel stages (``keeper.warm_hint``,
``tasks.warm_worker``) with the modules the stages import, never the notebook's own."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from nb2prod.core.builder import build_spec
from nb2prod.runner.keeper import warm_hint
from tests.conftest import make_notebook


def _hint(path, tracking_uri="sqlite:////tmp/x/mlflow.db"):
    return warm_hint(SimpleNamespace(spec=build_spec(path), ship=None, tracking_uri=tracking_uri))


def test_a_chain_warms_no_worker_a_fan_out_warms_the_stages_beside_the_first(tmp_path):
    chain = make_notebook(tmp_path / "chain.ipynb", [("import json", ["setup"]), ("a = 1", ["stage:one"]),
                                                      ("b = a + 1", ["stage:two"])])
    assert _hint(chain)["modules"] == [] and _hint(chain)["tracking_uri"] == "sqlite:////tmp/x/mlflow.db"
    assert _hint(chain, "http://user:secret@mlflow:5000")["tracking_uri"] is None  # never in a command line
    fan = make_notebook(tmp_path / "fan.ipynb", [
        ("import json\nfrom wave import open as wave_open", ["setup"]), ("a = 1", ["stage:load"]),
        ("import colorsys\nb = a + 1", ["stage:left"]), ("c = a + 2", ["stage:right"]), ("d = b + c", ["stage:join"])])
    hint = _hint(fan)
    assert hint["width"] == 2 and hint["dir"] == str(tmp_path) and hint["ship"] is None
    assert hint["modules"] == ["colorsys", "json", "wave", "wave.open"]


def test_a_warmed_worker_imports_installed_modules_never_the_notebooks_own(tmp_path, monkeypatch):
    from nb2prod.runner.tasks import warm_worker

    (tmp_path / "tabnanny.py").write_text("raise RuntimeError('the notebook module was imported ahead')\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "__init__.py").write_text("raise RuntimeError('the notebook package was imported ahead')\n")
    for name in ("wave", "tabnanny"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    warm_worker._function(["wave", "tabnanny", "mine.sub", "wave.open", "no_such_module_anywhere"], str(tmp_path),
                          None)
    assert "wave" in sys.modules  # installed: imported ahead of the stage
    assert "tabnanny" not in sys.modules and "mine" not in sys.modules  # the notebook's own: left to the stage
