"""The dependency rule, checked on the source: front ends -> api -> runner / store / tracking -> core.

Each package of nb2prod may import only the packages listed for it here (ARCHITECTURE.md draws the same
picture). ``core`` and ``contracts`` are pure: no cluster, tracking, server or notebook library.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2] / "nb2prod"
BASE = {"errors", "home", "secret", "__version__"}  # leaves: errors, state paths, the secrets rule
BELOW_API = BASE | {"core", "contracts"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(), "home": set(), "secret": {"contracts", "errors"}, "__main__": {"cli"},
    "__init__": {"notebook", "runner"},
    "core": {"errors", "__version__"},
    "contracts": {"core", "errors"},
    "features": set(),
    "mlops": {"core", "errors"},
    "tracking": BELOW_API,
    "store": BELOW_API,
    "cache": BELOW_API | {"store"},
    "runner": BELOW_API | {"cache", "store", "tracking", "mlops"},
    "scheduling": BELOW_API | {"api", "runner", "store"},  # the cron way in: its fires start runs through the api
    "api": BELOW_API | {"cache", "runner", "store", "tracking", "mlops"},
    # front ends: the api, the schedules service they host, and never each other
    "notebook": {"api", "contracts", "core", "errors"},
    "server": BELOW_API | {"api", "scheduling"},
    "cli": BELOW_API | {"api", "scheduling", "runner", "cache", "mlops"},  # cluster and cache commands manage those
}
# Imports of heavy or front-end libraries that the pure packages never make (not even lazily).
IMPURE = {"ray", "mlflow", "jupyter_server", "tornado", "traitlets", "IPython", "ipywidgets", "sqlalchemy", "rich",
          "papermill", "nbformat", "cupy", "numpy", "psutil"}
PURE = {"core", "contracts"}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            if node.module == "nb2prod":
                yield from (f"nb2prod.{a.name}" for a in node.names)


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "labextension" not in rel.parts:
            yield path, rel, rel.parts[0].removesuffix(".py")


def _violations() -> set[tuple[str, str]]:
    found = set()
    for path, rel, package in _modules():
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "nb2prod" and len(parts) > 1 and parts[1] != package \
                    and parts[1] not in ALLOWED[package]:
                found.add((rel.as_posix(), parts[1]))
    return found


def test_every_package_has_a_rule():
    assert {package for _, _, package in _modules()} <= set(ALLOWED)


def test_dependencies_point_one_way():
    unexpected = _violations()
    assert not unexpected, "imports against the layering (see ARCHITECTURE.md):\n" + "\n".join(
        f"  {module} imports nb2prod.{target}" for module, target in sorted(unexpected))


@pytest.mark.parametrize("package", sorted(PURE))
def test_pure_packages_import_no_heavy_library(package):
    bad = {(rel.as_posix(), name) for path, rel, pkg in _modules() if pkg == package
           for name in _imports(path) if name.split(".")[0] in IMPURE}
    assert not bad


def test_importing_the_cli_and_contracts_stays_light():
    import subprocess

    code = ("import sys, nb2prod.contracts, nb2prod.api, nb2prod.cli.run; "
            "print(sorted(m for m in ('ray', 'mlflow', 'IPython', 'jupyter_server') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
