"""A warm stage worker imports a notebook's own modules afresh for every stage, and never one notebook's
``utils.py`` for another's (``stage._isolate_local_modules``), in the worker's own process."""

from __future__ import annotations

import importlib
import sys

from nb2prod.runner.stage import StagePayload, execute


def _stage(directory, code: str, outputs: list[str]) -> dict:
    meta, values = execute(StagePayload("r", "s", 1, str(directory), [(0, code)], outputs=outputs), {})
    assert meta["status"] == "done", meta["error"]
    return values


def test_local_modules_are_imported_afresh_and_per_directory(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "localmod_utils.py").write_text("VALUE = 'a1'\n")
    (b / "localmod_utils.py").write_text("VALUE = 'b1'\n")
    (b / "localmod_helper.py").write_text("V = 1\n")
    monkeypatch.syspath_prepend(str(b))
    try:
        assert importlib.import_module("localmod_helper").V == 1  # imported before b was a notebook directory
        use = "from localmod_utils import VALUE\nimport localmod_helper\nv = localmod_helper.V"
        assert _stage(a, use, ["VALUE", "v"]) == {"VALUE": "a1", "v": 1}
        (a / "localmod_utils.py").write_text("VALUE = 'a2'\n")  # edited within the second, same size
        (b / "localmod_helper.py").write_text("V = 2\n")
        assert _stage(a, use, ["VALUE"]) == {"VALUE": "a2"}
        # b's own utils, and its helper (looked at before b was a notebook directory) imported afresh
        assert _stage(b, use, ["VALUE", "v"]) == {"VALUE": "b1", "v": 2}
        assert _stage(a, use, ["VALUE"]) == {"VALUE": "a2"}
    finally:
        for name in ("localmod_utils", "localmod_helper"):
            sys.modules.pop(name, None)
