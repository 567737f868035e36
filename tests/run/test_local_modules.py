"""A warm stage worker imports a notebook's own modules afresh for every stage, and never one notebook's
``utils.py`` for another's (``stage._isolate_local_modules``); a stage's outputs leave it pickled by reference to
those modules (``stage._pack``). In the worker's own process."""

from __future__ import annotations

import importlib
import sys

from nb2prod.runner.stage import StagePayload, execute


def _stage(directory, code: str, outputs: list[str]) -> dict:
    meta, values = execute(StagePayload("r", "s", 1, str(directory), [(0, code)], outputs=outputs), {})
    assert meta["status"] == "done", meta["error"]
    return values.load()


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


def test_outputs_are_pickled_in_the_worker_by_reference_to_the_notebooks_modules(tmp_path):
    """A stage's outputs leave its worker pickled (``cache.Pickled``): an object of the notebook's own module by
    reference, loadable where that module imports; an output that cannot be pickled fails the stage, named."""
    (tmp_path / "localmod_shapes.py").write_text("class Square:\n    def __init__(self, side):\n        self.side = side\n")
    try:
        meta, packed = execute(StagePayload("r", "s", 1, str(tmp_path), [(0, "from localmod_shapes import Square\n"
                                                                              "sq = Square(3)")], outputs=["sq"]), {})
        assert meta["status"] == "done", meta["error"]
        assert b"localmod_shapes" in packed.data and b"Square" in packed.data  # a reference, not the class's code
        sys.modules.pop("localmod_shapes")
        downstream = StagePayload("r", "t", 1, str(tmp_path), [(1, "area = sq.side ** 2")], inputs={"sq": "s"},
                                  outputs=["area"])
        meta, packed = execute(downstream, {"s": packed})  # unpickled with the notebook's directory on the path
        assert meta["status"] == "done", meta["error"]
        assert packed.load() == {"area": 9}
    finally:
        sys.modules.pop("localmod_shapes", None)

    meta, packed = execute(StagePayload("r", "gen", 1, str(tmp_path), [(2, "g = (i for i in range(3))")],
                                        outputs=["g"]), {})
    assert meta["status"] == "failed" and meta["error"]["type"] == "SerializationError"
    assert meta["error"]["message"].startswith("output 'g' of stage 'gen' cannot be serialized")
    assert meta["error"]["cell_index"] == 2 and packed.load() == {}
