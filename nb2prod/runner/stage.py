"""What runs inside a Ray worker for one stage: namespace, cells, capture, outputs.

Imports only the standard library (and nb2prod's stdlib-only contracts) at module level: this module is
loaded in every worker.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
import traceback
import types
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from nb2prod.contracts import mask

CELL_FILENAME = "<cell {index}>"
Echo = Callable[[str, str], None]  # (stream name, text): live output for --log-output
_SCALARS = (int, float, bool)
_MISSING = object()


@dataclass
class StagePayload:
    """Everything a worker needs to run one stage attempt."""

    run_id: str
    stage: str
    attempt: int
    notebook_dir: str
    cells: list[tuple[int, str]]  # (cell index, code)
    setup: list[tuple[int, str]] = field(default_factory=list)
    parameters_cell: tuple[int, str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # name -> producing stage
    mutated_inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    keep_all: bool = False  # a leaf stage: also keep every other value it bound (for `%nb2prod pull`)
    metrics: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    mlflow: dict[str, str] | None = None  # tracking_uri, run_id of the stage's MLflow run
    register: dict[str, str] = field(default_factory=dict)  # variable -> model name (packed here)
    monitor: list[str] = field(default_factory=list)  # variables profiled here
    ship: str | None = None  # content hash of the shipped notebook directory (see runner.shipping)
    cache: dict[str, str] | None = None  # directory, key, node: the worker writes the cache when on that node


class _Tee(io.TextIOBase):
    """Collects a stream per cell as notebook outputs; optionally echoes it live."""

    def __init__(self, name: str, sink: list[dict], echo: Echo | None, secrets: list[str]) -> None:
        self.name, self.sink, self.echo, self.secrets = name, sink, echo, secrets
        self.log: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = mask(text, self.secrets)
        if self.sink and self.sink[-1].get("name") == self.name:
            self.sink[-1]["text"].append(text)  # joined as the cell ends (_join_streams): `+=` was quadratic
        else:
            self.sink.append({"output_type": "stream", "name": self.name, "text": [text]})
        self.log.append(text)
        if self.echo is not None:
            self.echo(self.name, text)
        return len(text)


def stage_dir() -> Path:
    """Directory whose files become artifacts of the current stage's MLflow run."""
    path = Path(os.environ.get("NB2PROD_STAGE_DIR") or Path.cwd() / "nb2prod-stage")
    path.mkdir(parents=True, exist_ok=True)
    return path


def execute(payload: StagePayload, upstream: dict[str, Any], echo: Echo | None = None) -> tuple[dict[str, Any], Any]:
    """Run one stage; return ``(meta, outputs)``, the outputs pickled here (:func:`_pack`). ``upstream``: each
    producer's outputs, in that form or as a dict. User errors are reported in ``meta``, not raised."""
    started = time.time()
    meta: dict[str, Any] = {"status": "done", "error": None, "cells": {}, "metrics": {}, "pid": os.getpid(),
                            "started_at": started}
    saved_env = {k: os.environ.get(k) for k in (*payload.env, "NB2PROD_STAGE_DIR", "MPLBACKEND",
                                                 "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")}
    os.environ.update(payload.env)
    os.environ.setdefault("MPLBACKEND", "Agg")
    workdir = tempfile.mkdtemp(prefix="nb2prod-stage-")  # on the worker's node; its files travel back in meta
    os.environ["NB2PROD_STAGE_DIR"] = workdir
    if payload.mlflow:
        os.environ["MLFLOW_TRACKING_URI"] = payload.mlflow["tracking_uri"]
        os.environ["MLFLOW_RUN_ID"] = payload.mlflow["run_id"]
    old_cwd = _worker_cwd()
    if payload.ship:  # the notebook's directory, as shipped: unpacked once per node, named by its content
        from nb2prod.runner.shipping import unpacked

        payload.notebook_dir = unpacked(payload.ship)
    _isolate_local_modules(payload.notebook_dir)
    # No bytecode for what stage code imports: a .pyc is valid for a source of the same size and mtime second, so
    # another warm worker could run a local module edited within the second after this one compiled it.
    wrote_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    os.chdir(payload.notebook_dir)
    sys.path.insert(0, payload.notebook_dir)
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__, "display": None}
    packed = None
    stdout_log: list[str] = []
    try:
        ns["display"] = _Display(meta)
        if payload.parameters_cell:
            _run_cell(payload.parameters_cell, ns, meta, payload, stdout_log, echo, record=False)
        ns.update(payload.parameters)
        for cell in payload.setup:
            _run_cell(cell, ns, meta, payload, stdout_log, echo, record=False)
        ns.update(_take_inputs(payload, upstream, ns))
        baseline = dict(ns)  # what the stage found: parameters, setup, inputs
        for cell in payload.cells:
            _run_cell(cell, ns, meta, payload, stdout_log, echo, record=True)
        outputs = _collect_outputs(payload, ns)
        if payload.keep_all:
            outputs.update(_everything_else(ns, baseline, outputs))
        packed = _pack(payload, outputs)
        meta["metrics"] = _collect_metrics(payload, ns)
        _mlops_artifacts(payload, ns, meta)
    except _CellFailed as failed:
        meta["status"], meta["error"] = "failed", failed.error
    finally:
        meta["logged"] = _close_mlflow_run(payload)
        meta["files"] = _stage_files(Path(workdir))
        shutil.rmtree(workdir, ignore_errors=True)
        sys.dont_write_bytecode = wrote_bytecode
        os.chdir(old_cwd)
        with contextlib.suppress(ValueError):
            sys.path.remove(payload.notebook_dir)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if payload.secrets:  # streams are masked as they are written; results, displays and errors here
        meta["cells"], meta["error"] = mask(meta["cells"], payload.secrets), mask(meta["error"], payload.secrets)
    meta["ended_at"] = time.time()
    meta["duration_s"] = meta["ended_at"] - started
    if meta.get("error"):  # the log ends as a kernel's would: with why the stage failed
        error = meta["error"]
        stdout_log.append(error["traceback"] or f"{error['type']}: {error['message']}\n")
    meta["log"] = "".join(stdout_log)
    if packed is None:  # the stage failed: nothing of it is read
        from nb2prod.cache import pickled

        packed = pickled({})
    return meta, packed


def _worker_cwd() -> str:
    """The directory the worker returns to after a stage. Ray starts workers in its raylet's working directory
    (where `ray start` ran); when that directory was deleted since, the temp directory."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return tempfile.gettempdir()


def _stage_files(directory: Path) -> dict[str, bytes]:
    """The files a stage wrote under :func:`stage_dir` (they become its MLflow run's artifacts)."""
    return {path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


class _CellFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


class _Display:
    """``display()`` inside a stage: records rich mime bundles on the current cell."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta, self.cell = meta, None

    def __call__(self, *objs: Any, **_: Any) -> None:
        for obj in objs:
            self.meta["cells"][self.cell]["outputs"].append(
                {"output_type": "display_data", "data": mime_bundle(obj), "metadata": {}})


def mime_bundle(obj: Any) -> dict[str, Any]:
    """A Jupyter mime bundle for ``obj`` from its ``_repr_*_`` methods."""
    data: dict[str, Any] = {"text/plain": repr(obj)}
    for mime, method in (("text/html", "_repr_html_"), ("image/png", "_repr_png_"), ("text/markdown", "_repr_markdown_"),
                         ("image/svg+xml", "_repr_svg_")):
        fn = getattr(obj, method, None)
        if callable(fn):
            try:
                value = fn()
            except Exception:  # a broken repr must not fail the stage
                continue
            if value is not None:
                data[mime] = base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return data


def _join_streams(outputs: list[dict]) -> None:
    """A cell's stream outputs as notebook outputs: each one's text chunks (:class:`_Tee`) joined."""
    for output in outputs:
        if output.get("output_type") == "stream":
            output["text"] = "".join(output["text"])


def _run_cell(cell: tuple[int, str], ns: dict, meta: dict, payload: StagePayload, log: list[str],
              echo: Echo | None, record: bool) -> None:
    index, code = cell
    entry = {"outputs": [], "start": _iso(time.time()), "status": "running"}
    meta["cells"][index] = entry
    ns["display"].cell = index
    out = _Tee("stdout", entry["outputs"], echo, payload.secrets)
    err = _Tee("stderr", entry["outputs"], echo, payload.secrets)
    filename = CELL_FILENAME.format(index=index)
    t0 = time.time()
    try:
        tree = ast.parse(code, filename)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) and record else None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(tree, filename, "exec"), ns)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), filename, "eval"), ns)
                if value is not None:
                    entry["outputs"].append({"output_type": "execute_result", "data": mime_bundle(value),
                                             "metadata": {}, "execution_count": index})
            _capture_figures(entry["outputs"])
    except BaseException as exc:  # noqa: BLE001 - any user error fails the stage, with its cell and line
        error = _error_from(exc, index)
        entry["outputs"].append({"output_type": "error", "ename": error["type"], "evalue": error["message"],
                                 "traceback": error["traceback"].splitlines()})
        entry.update(status="failed", end=_iso(time.time()), duration=time.time() - t0)
        log += out.log + err.log
        raise _CellFailed(error) from None
    finally:
        _join_streams(entry["outputs"])
    entry.update(status="completed", end=_iso(time.time()), duration=time.time() - t0)
    log += out.log + err.log
    if not record:
        del meta["cells"][index]


def _error_from(exc: BaseException, index: int) -> dict[str, Any]:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell ")
              or not f.filename.startswith(str(Path(__file__).parent))]
    user = [f for f in frames if f.filename.startswith("<cell ")]
    where = user[-1] if user else None
    cell_index = int(where.filename[6:-1]) if where else index
    line = where.lineno if where else (exc.lineno if isinstance(exc, SyntaxError) else None)
    text = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(exc), exc))
    return {"type": type(exc).__name__, "message": str(exc), "cell_index": cell_index, "line": line,
            "traceback": "Traceback (most recent call last):\n" + text}


def _take_inputs(payload: StagePayload, upstream: dict[str, Any], ns: dict) -> dict[str, Any]:
    from nb2prod.cache import Pickled

    upstream = {k: v.load() if isinstance(v, Pickled) else v for k, v in upstream.items()}
    values = {}
    for name, producer in payload.inputs.items():
        value = upstream[producer][name]
        if name in payload.mutated_inputs:
            value = _writable(value)
        values[name] = _rebind(value, ns)
    return values


def _writable(value: Any) -> Any:
    """Ray hands numpy data over read-only (zero-copy); a stage that mutates it gets a copy."""
    flags = getattr(value, "flags", None)
    if flags is not None and not getattr(flags, "writeable", True):
        return value.copy()
    if type(value).__module__.startswith("pandas"):
        return value.copy(deep=True)
    return value


def _rebind(value: Any, ns: dict) -> Any:
    """Functions and classes made in another stage's ``__main__`` see this stage's globals."""
    if isinstance(value, types.FunctionType) and value.__module__ == "__main__":
        fn = types.FunctionType(value.__code__, ns, value.__name__, value.__defaults__, value.__closure__)
        fn.__kwdefaults__, fn.__dict__ = value.__kwdefaults__, dict(value.__dict__)
        fn.__qualname__, fn.__doc__ = value.__qualname__, value.__doc__
        return fn
    if isinstance(value, type) and value.__module__ == "__main__":
        for attr, member in list(vars(value).items()):
            if isinstance(member, types.FunctionType):
                setattr(value, attr, _rebind(member, ns))
            elif isinstance(member, (staticmethod, classmethod)):
                setattr(value, attr, type(member)(_rebind(member.__func__, ns)))
    return value


def _everything_else(ns: dict, baseline: dict, outputs: dict[str, Any]) -> dict[str, Any]:
    """Values a leaf stage bound itself that can be pickled (modules, privates, unpicklable values left out)."""
    kept = {}
    for name, value in ns.items():
        if name in outputs or name.startswith("_") or isinstance(value, types.ModuleType) \
                or baseline.get(name, _MISSING) is value:
            continue
        if type(value).__module__.startswith(("numpy", "pandas")) or _pickling_error(value) is None:
            kept[name] = value  # best effort: only what can be stored
    return kept


def _collect_outputs(payload: StagePayload, ns: dict) -> dict[str, Any]:
    outputs = {}
    for name in payload.outputs:
        if name not in ns:
            raise _CellFailed({"type": "NameError", "message": f"stage {payload.stage!r} did not define {name!r}, "
                               "which a downstream stage reads (was it bound only in a branch not taken?)",
                               "cell_index": payload.cells[-1][0], "line": None, "traceback": ""})
        outputs[name] = ns[name]
    return outputs


def _pack(payload: StagePayload, outputs: dict[str, Any]) -> Any:
    """The stage's outputs pickled here (``cache.Pickled``), where the notebook's own modules are importable: an
    object of its ``utils.py`` is pickled by reference, and unpickled only by the consuming stage, with the
    notebook's directory on its path; the coordinator, the cache and a client store them as they are."""
    from nb2prod.cache import pickled

    try:
        return pickled(outputs)
    except Exception as exc:  # noqa: BLE001 - the stage's error, naming the output that cannot be pickled
        name, cause = _unpicklable(outputs) or ("", exc)
        raise _CellFailed({"type": "SerializationError", "cell_index": payload.cells[-1][0], "line": None,
                           "traceback": "",
                           "message": f"output {name!r} of stage {payload.stage!r} cannot be serialized to pass to "
                                      f"the next stage ({type(cause).__name__}: {cause}); recreate it in the stage "
                                      "that uses it, or in a `setup` cell"}) from None


def _unpicklable(outputs: dict[str, Any]) -> tuple[str, Exception] | None:
    """The first output that cannot be pickled, with the reason."""
    for name, value in outputs.items():
        if (error := _pickling_error(value)) is not None:
            return name, error
    return None


def _pickling_error(value: Any) -> Exception | None:
    """Why ``value`` cannot be pickled, None when it can (its large buffers are not copied to find out)."""
    import cloudpickle

    try:
        cloudpickle.dumps(value, protocol=5, buffer_callback=lambda _: False)
    except Exception as exc:  # noqa: BLE001 - any reason
        return exc
    return None


def _collect_metrics(payload: StagePayload, ns: dict) -> dict[str, float]:
    metrics = {}
    for name in payload.metrics:
        value = ns.get(name)
        if isinstance(value, _SCALARS) or (type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0):
            metrics[name] = float(value)
    return metrics


def _mlops_artifacts(payload: StagePayload, ns: dict, meta: dict[str, Any]) -> None:
    """``monitor:`` profiles and ``register:`` models, built here where the values are; they travel back in
    ``meta`` (the worker never writes into the client's tracking store)."""
    if not (payload.monitor or payload.register):
        return
    cell = payload.cells[-1][0]
    try:
        if payload.monitor:
            from nb2prod.mlops.profile import build_profile

            meta["profiles"] = {var: build_profile(_bound(payload, ns, var, "monitor")) for var in payload.monitor}
        if payload.register:
            from nb2prod.mlops.registry import pack_model

            candidates = [ns[i] for i in payload.inputs if i in ns] + [
                v for k, v in ns.items() if k not in payload.inputs and getattr(v, "ndim", None) == 2]
            meta["models"] = {var: pack_model(_bound(payload, ns, var, "register"), candidates)
                              for var in payload.register}
    except _CellFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - a value that cannot be profiled/saved fails the stage, clearly
        raise _CellFailed({"type": type(exc).__name__, "cell_index": cell, "line": None, "traceback": "",
                           "message": f"stage {payload.stage!r}: {exc}"}) from None


def _bound(payload: StagePayload, ns: dict, var: str, tag: str) -> Any:
    if var not in ns:
        raise _CellFailed({"type": "NameError", "cell_index": payload.cells[-1][0], "line": None, "traceback": "",
                           "message": f"{tag}:{var}: stage {payload.stage!r} did not bind {var!r}"})
    return ns[var]


def _capture_figures(outputs: list[dict]) -> None:
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        buf = io.BytesIO()
        plt.figure(num).savefig(buf, format="png", bbox_inches="tight")
        outputs.append({"output_type": "display_data", "metadata": {},
                        "data": {"image/png": base64.b64encode(buf.getvalue()).decode(), "text/plain": f"<Figure {num}>"}})
    plt.close("all")


_LOCAL_DIRS: set[str] = set()  # notebook directories stages of this worker ran in
_NEVER_LOCAL = ("nb2prod", "ray")
_NOT_LOCAL: dict[str, types.ModuleType] = {}  # modules found not to come from any of _LOCAL_DIRS (checked once)


def _isolate_local_modules(directory: str) -> None:
    """Drop modules imported from any notebook directory a stage of this worker ran in: a warm worker
    re-imports edited local modules, and two notebooks' ``utils.py`` never see each other. A module is looked at
    once (a warm worker holds thousands: ~2.5 ms a stage to look at all), again only when replaced in
    ``sys.modules`` or when a stage runs in a directory this worker had not seen."""
    seen = {os.path.join(directory, ""), os.path.join(os.path.realpath(directory), "")}
    if not seen <= _LOCAL_DIRS:
        _LOCAL_DIRS.update(seen)
        _NOT_LOCAL.clear()  # a module may come from the new directory
    prefixes = tuple(_LOCAL_DIRS)
    for name, module in list(sys.modules.items()):
        if _NOT_LOCAL.get(name) is module:
            continue
        path = getattr(module, "__file__", None)
        if path and path.startswith(prefixes) and name.partition(".")[0] not in _NEVER_LOCAL \
                and "site-packages" not in path:
            del sys.modules[name]
            with contextlib.suppress(OSError, TypeError):  # bytecode is checked by mtime in whole seconds only:
                os.remove(module.__cached__)  # an edit within that second would run the old code
        else:
            _NOT_LOCAL[name] = module


def _close_mlflow_run(payload: StagePayload) -> dict[str, Any] | None:
    """End the run stage code left active; return what it logged on a store kept in this worker, if any."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return None
    if mlflow.active_run() is not None:
        mlflow.end_run()
    if payload.mlflow and "nb2prod.tracking.stagestore" in sys.modules:
        return sys.modules["nb2prod.tracking.stagestore"].take(payload.mlflow["run_id"])
    return None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()
