"""``nb2prod run`` and ``nb2prod resume``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from nb2prod.cli import cli
from nb2prod.cli.render import stderr
from nb2prod.errors import Nb2ProdError

RESULT_SCHEMA_VERSION = 1


def run_options(fn):
    """Every ``RunOptions`` field as a click option (shared by run, resume, schedule add)."""
    decorators = [
        click.option("-p", "--parameter", "params", nargs=2, multiple=True, metavar="NAME VALUE",
                     help="Parameter, type inferred like papermill (True/False/None/int/float/str)."),
        click.option("-r", "--raw", "raw", nargs=2, multiple=True, metavar="NAME VALUE", help="Parameter kept as a string."),
        click.option("-f", "--parameters-file", "files", multiple=True, type=click.Path(dir_okay=False),
                     help="YAML file of parameters."),
        click.option("-y", "--parameters-yaml", "yamls", multiple=True, help="YAML string of parameters."),
        click.option("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else nb2prod's local cluster)."),
        click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else under NB2PROD_HOME)."),
        click.option("--experiment", help="MLflow experiment (default: the notebook's file stem)."),
        click.option("--output-notebook", type=click.Path(dir_okay=False), help="Also write the executed notebook here."),
        click.option("--log-output", is_flag=True, help="Stream stage stdout/stderr live, prefixed by stage."),
        click.option("--no-cache", is_flag=True, help="Read nothing from the stage cache."),
        click.option("--force", multiple=True, metavar="STAGE", help="Rerun STAGE and its downstream."),
        click.option("--stage", "stages", multiple=True, metavar="STAGE", help="Run only STAGE (repeatable)."),
        click.option("--downstream", is_flag=True, help="With --stage: also everything downstream of it."),
        click.option("--gpu-fallback", type=click.Choice(["fail", "cpu"]), default="fail", show_default=True,
                     help="What a gpu stage does on a cluster without GPUs."),
        click.option("--secret", "secrets", multiple=True, metavar="NAME", help="Parameter whose value is never recorded."),
        click.option("--env", "env", multiple=True, metavar="NAME", help="Environment variable passed to stages, never recorded."),
        click.option("--pip", multiple=True, metavar="PKG", help="Extra package for the stages' Ray runtime env."),
        click.option("--requirements", type=click.Path(dir_okay=False), help="requirements.txt for the stages' runtime env."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def options_from_cli(kw: dict[str, Any]):
    """Build ``RunOptions`` from the click keyword arguments of :func:`run_options`."""
    from nb2prod.core.params import collect_parameters
    from nb2prod.runner.options import RunOptions

    return RunOptions(
        parameters=collect_parameters(kw["params"], kw["raw"], kw["files"], kw["yamls"]),
        ray_address=kw["ray_address"], tracking_uri=kw["tracking_uri"], experiment=kw["experiment"],
        output_notebook=kw["output_notebook"], log_output=kw["log_output"], no_cache=kw["no_cache"],
        force=list(kw["force"]), stages=list(kw["stages"]), downstream=kw["downstream"],
        gpu_fallback=kw["gpu_fallback"], secrets=list(kw["secrets"]), env=list(kw["env"]), pip=list(kw["pip"]),
        requirements=kw["requirements"])


@cli.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@run_options
@click.option("--resume", "resume_from", metavar="RUN_ID", help="Resume that run: rerun its failed and unrun stages.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--quiet", is_flag=True, help="No live status.")
@click.option("--run-id", hidden=True)
@click.option("--options-file", hidden=True, type=click.Path(dir_okay=False))
@click.option("--origin", hidden=True, default="cli")
def run(notebook: str, resume_from: str | None, as_json: bool, quiet: bool, run_id: str | None,
        options_file: str | None, origin: str, **kw: Any) -> None:
    """Run NOTEBOOK (or a compiled pipeline.json) as a pipeline on Ray, tracked in MLflow."""
    from nb2prod.runner.options import RunOptions

    try:
        if options_file:
            options = RunOptions.from_dict(json.loads(Path(options_file).read_text()))
        else:
            options = options_from_cli(kw)
        if resume_from:
            options.resume_from = resume_from
            if not options.parameters:  # same parameters as the resumed run
                from nb2prod import api

                options.parameters = api.get_run(resume_from)["options"].get("parameters", {})
        execute(notebook, options, as_json=as_json, quiet=quiet, run_id=run_id, origin=origin)
    except Nb2ProdError as exc:
        if not as_json:
            raise
        click.echo(json.dumps({"schema_version": RESULT_SCHEMA_VERSION, "run_id": run_id, "mlflow_run_id": None,
                               "status": "invalid", "duration_s": 0, "stages": {}, "error": exc.to_dict()}))
        stderr.print(f"[red]error:[/] {exc.message}")
        sys.exit(exc.exit_code)


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--quiet", is_flag=True, help="No live status.")
def resume(run_id: str, as_json: bool, quiet: bool) -> None:
    """Rerun the failed and never-run stages of RUN_ID with the same parameters."""
    from nb2prod import api
    from nb2prod.runner.options import RunOptions

    record = api.get_run(run_id)
    options = RunOptions.from_dict(record["options"])
    options.resume_from = record["id"]
    execute(record["notebook"], options, as_json=as_json, quiet=quiet)


def execute(notebook: str, options, *, as_json: bool, quiet: bool, run_id: str | None = None,
            origin: str = "cli") -> None:
    """Run, render live status, print the result, exit 0/1/130."""
    # Ray imports jsonschema, which builds rfc3987_syntax's grammars at import (~0.7 s) only to check
    # URI formats; the CLI never validates those, so the optional module is skipped in this process.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from nb2prod import api
    from nb2prod.cli.live import LiveStatus

    prepared_stages = list(api.prepare(notebook, options).spec.stages)
    if not quiet and not (options.ray_address or os.environ.get("RAY_ADDRESS")):
        from nb2prod.runner import cluster

        if cluster.status() is None:
            stderr.print("starting nb2prod's local Ray cluster (127.0.0.1 only; it stays warm for the next runs — "
                         "`nb2prod cluster down` stops it)")
    with LiveStatus(prepared_stages, enabled=not quiet) as live:
        record = api.run(notebook, options, run_id=run_id, origin=origin, observer=live)
    if as_json:
        click.echo(json.dumps(result_json(record)))
    _summary(record)
    if record["status"] == "cancelled":
        sys.exit(130)
    sys.exit(0 if record["status"] == "done" else 1)


def result_json(record: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` result object."""
    return {"schema_version": RESULT_SCHEMA_VERSION, "run_id": record["id"], "mlflow_run_id": record["mlflow_run_id"],
            "status": record["status"], "duration_s": record["duration_s"],
            "stages": {name: {"status": s["status"], "duration_s": s["duration_s"], "attempts": s["attempts"],
                              "error": {k: s["error"].get(k) for k in ("type", "message", "cell_index", "line")}
                              if s["error"] else None}
                       for name, s in record["stages"].items()}}


def _summary(record: dict[str, Any]) -> None:
    for name, stage in record["stages"].items():
        error = stage["error"]
        if stage["status"] == "failed" and error:
            where = f" (cell {error['cell_index']}" + (f", line {error['line']})" if error.get("line") else ")") \
                if error.get("cell_index") is not None else ""
            stderr.print(f"[red]stage {name!r} failed[/]{where}: {error['type']}: {error['message']}",
                         markup=True, soft_wrap=True)
            if error.get("traceback"):
                stderr.print(error["traceback"].rstrip(), markup=False, highlight=False, soft_wrap=True)
    color = {"done": "green", "failed": "red", "cancelled": "magenta"}.get(record["status"], "yellow")
    stderr.print(f"run [bold]{record['id']}[/] [{color}]{record['status']}[/] in {record['duration_s']:.2f}s — "
                 f"MLflow run {record['mlflow_run_id']} at {record['tracking_uri']} (see `nb2prod ui`)", markup=True,
                 soft_wrap=True)
