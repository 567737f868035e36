"""Merkle cache keys of stages, computable before anything runs.

A stage's key hashes: its code, the parameters cell and setup cells' code, the values of the
parameters it reads (directly or through notebook functions it calls), its upstream stages' keys,
the nb2prod version, the content of files named by its ``inputs:`` tags, the source of local
modules (in the notebook's directory) that it or setup imports, and its ``register:`` models and
``monitor:`` variables (only a stage that runs registers and profiles: a new model name reruns it).
Never file timestamps.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from nb2prod import __version__
from nb2prod.core.spec import PipelineSpec


def stage_keys(spec: PipelineSpec, parameters: dict[str, Any],
               choose: Callable[[str, str], str] | None = None) -> dict[str, str]:
    """``{stage: key}`` for every stage, in one topological pass; ``parameters`` are the resolved values.

    ``choose(stage, key)`` returns the key of what the stage will really provide: ``key`` when it runs (or
    is a hit on ``key``), the key of another cache entry when it is taken from an earlier run. Downstream
    keys are derived from the returned key, so a key always names what its stage consumed.
    """
    root = Path(spec.notebook).parent
    shared_code = [spec.cells[i].source for i in spec.setup_cells]
    if spec.parameters_cell is not None:
        shared_code.insert(0, spec.cells[spec.parameters_cell].source)
    setup_modules = _local_modules(root, shared_code)
    keys: dict[str, str] = {}
    for name, stage in spec.stages.items():  # topological order: upstream keys exist
        code = [spec.cells[i].source for i in stage.cells]
        material = {
            "nb2prod": __version__, "code": code, "shared": shared_code,
            "parameters": {p: _jsonable(parameters.get(p)) for p in stage.parameters_read},
            "upstream": {u: keys[u] for u in stage.upstream},
            "files": {pattern: _files_digest(root, pattern) for pattern in stage.input_files},
            "modules": {**setup_modules, **_local_modules(root, code)},
            "register": stage.register, "monitor": stage.monitor,
        }
        key = hashlib.sha256(json.dumps(material, sort_keys=True, default=repr).encode()).hexdigest()
        keys[name] = choose(name, key) if choose else key
    return keys


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)


def _files_digest(root: Path, pattern: str) -> dict[str, str]:
    paths = sorted(p for p in root.glob(pattern) if p.is_file()) if not Path(pattern).is_absolute() \
        else sorted(p for p in Path("/").glob(pattern.lstrip("/")) if p.is_file())
    return {str(p): _sha256(p) for p in paths}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_modules(root: Path, sources: list[str]) -> dict[str, str]:
    """Digest of each module imported by ``sources`` that lives in the notebook's directory."""
    found: dict[str, str] = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                module, package = root / f"{top}.py", root / top
                if module.is_file():
                    found[top] = _sha256(module)
                elif package.is_dir():
                    found[top] = hashlib.sha256("".join(
                        _sha256(p) for p in sorted(package.rglob("*.py"))).encode()).hexdigest()
    return found
