"""``nb2prod ci``: check a notebook, run it once on a throw-away cluster and store, evaluate its gates.

Exit 0 when the check, every stage and every gate pass; 1 when one fails; 2 on usage errors.
Never reads the cache, never promotes; ``--junit FILE`` writes the outcome for CI systems.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from nb2prod.cli import cli
from nb2prod.cli.junit import Case, write
from nb2prod.cli.render import print_checks, stderr


@cli.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("-p", "--parameter", "params", nargs=2, multiple=True, metavar="NAME VALUE", help="Parameter (as `run -p`).")
@click.option("-r", "--raw", "raw", nargs=2, multiple=True, metavar="NAME VALUE", help="Parameter kept as a string.")
@click.option("-f", "--parameters-file", "files", multiple=True, type=click.Path(dir_okay=False), help="YAML parameters.")
@click.option("--gate", "gates", multiple=True, metavar="METRIC>=VALUE", help="Gate on top of the notebook's gate: tags.")
@click.option("--junit", "junit", type=click.Path(dir_okay=False), help="Write a JUnit XML report here.")
@click.option("--tracking-uri", help="MLflow store to keep the run in (default: a throw-away one).")
def ci(notebook: str, params, raw, files, gates, junit: str | None, tracking_uri: str | None) -> None:
    """Check NOTEBOOK, run it once (no cache, throw-away state), then its gates; exit 0/1/2."""
    from nb2prod.core.builder import build_spec
    from nb2prod.core.params import collect_parameters
    from nb2prod.errors import NotebookError
    from nb2prod.contracts.options import RunOptions
    from nb2prod.mlops.gates import check_options

    options = RunOptions(parameters=collect_parameters(params, raw, files), gates=list(gates), no_cache=True,
                         tracking_uri=tracking_uri)
    check_options(options)  # a malformed --gate is a usage error (2) before anything runs
    suite = Path(notebook).stem
    try:
        spec = build_spec(notebook)
        problems = [str(e) for e in spec.errors]
    except NotebookError as exc:
        problems = [exc.message]
    cases = [Case(f"{suite}.check", "check", "failed" if problems else "passed", "; ".join(problems)[:500],
                  "\n".join(problems))]
    if problems:
        for problem in problems:
            stderr.print(f"[red]error:[/] {problem}", markup=True, soft_wrap=True)
        _finish(junit, suite, cases)
    record = _run_isolated(notebook, options)
    cases += _stage_cases(suite, record) + _gate_cases(suite, record, [*spec.gates, *options.gates])
    print_checks(record)
    _finish(junit, suite, cases)


def _run_isolated(notebook: str, options) -> dict[str, Any]:
    """Run on a fresh embedded cluster under a throw-away NB2PROD_HOME (and MLflow store), then remove both."""
    from nb2prod import api
    from nb2prod.runner import cluster

    from nb2prod.core.builder import real_path

    notebook = str(real_path(notebook))
    saved = {k: os.environ.get(k) for k in ("NB2PROD_HOME", "RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    home = tempfile.mkdtemp(prefix="nb2prod-ci-")
    os.environ["NB2PROD_HOME"] = home
    os.environ.pop("RAY_ADDRESS", None)
    options.tracking_uri = options.tracking_uri or f"sqlite:///{home}/mlflow.db"
    try:
        stderr.print(f"nb2prod ci: running {notebook} on a throw-away cluster (state in {home})", soft_wrap=True)
        return api.run(notebook, options, origin="ci")
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stage_cases(suite: str, record: dict[str, Any]) -> list[Case]:
    cases = []
    for name, stage in record["stages"].items():
        case = Case(f"{suite}.stages", name, time_s=stage["duration_s"] or 0.0)
        error = stage["error"]
        if stage["status"] == "failed":
            where = f"cell {error['cell_index']}: " if error and error.get("cell_index") is not None else ""
            case.outcome = "failed"
            case.message = f"{where}{error['type']}: {error['message']}" if error else "failed"
            case.detail = (error or {}).get("traceback") or case.message
        elif stage["status"] in ("skipped", "cancelled"):
            run_error = record.get("error") or {}
            case.outcome, case.message = "skipped", run_error.get("message") or f"stage {stage['status']}"
        cases.append(case)
    return cases


def _gate_cases(suite: str, record: dict[str, Any], gates: list[str]) -> list[Case]:
    """A testcase per gate; when the run failed before the gates, each gate fails with that reason."""
    if record.get("gates"):
        return [Case(f"{suite}.gates", g["gate"], "passed" if g["passed"] else "failed",
                     "" if g["passed"] else g["reason"]) for g in record["gates"]]
    from nb2prod.mlops.gates import parse_gates

    return [Case(f"{suite}.gates", str(g), "failed", f"not evaluated: the run {record['status']}")
            for g in parse_gates(gates)]


def _finish(junit: str | None, suite: str, cases: list[Case]) -> None:
    if junit:
        write(junit, suite, cases)
    failed = [c for c in cases if c.outcome == "failed"]
    for case in failed:
        stderr.print(f"[red]FAILED[/] {case.classname} {case.name}: {case.message}", markup=True, soft_wrap=True)
    passed = len(cases) - len(failed) - sum(c.outcome == "skipped" for c in cases)
    stderr.print(f"nb2prod ci: {passed} passed, {len(failed)} failed, {len(cases) - passed - len(failed)} skipped",
                 soft_wrap=True)
    sys.exit(1 if failed else 0)
