"""``nb2prod run`` and ``nb2prod resume``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from nb2prod import secret
from nb2prod.cli import cli
from nb2prod.cli.render import print_checks, stderr
from nb2prod.contracts import location, succeeded
from nb2prod.contracts.options import RESUME, RUN, RunOptions, click_options, from_click
from nb2prod.errors import Nb2ProdError

RESULT_SCHEMA_VERSION = 1


@cli.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click_options(RUN)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--quiet", is_flag=True, help="No live status.")
@click.option("--detach", is_flag=True, help="Return at once; the run goes on without this process (a Ray job with "
              "an http(s):// cluster address, else a local background process).")
@click.option("--run-id", hidden=True)
@click.option("--options-file", hidden=True, type=click.Path(dir_okay=False))
@click.option("--job-package", hidden=True)
@click.option("--origin", hidden=True, default="cli")
def run(notebook: str, as_json: bool, quiet: bool, detach: bool, run_id: str | None, options_file: str | None,
        job_package: str | None, origin: str, **kw: Any) -> None:
    """Run NOTEBOOK (or a compiled pipeline.json) as a pipeline on Ray, tracked in MLflow."""
    source = None
    try:
        if job_package:  # the driver of a detached run's Ray job: options, secret values, source from its package
            from nb2prod.runner.jobs import accept

            package = accept(job_package)
            chosen, source = RunOptions.from_dict(package["options"]), package.get("source")
        elif options_file:  # a detached run (api.start_run): inline secret values come in the environment
            chosen = RunOptions.from_dict(json.loads(Path(options_file).read_text()))
            chosen.parameters.update(secret.take_inline_values())
        else:
            chosen = from_click(RUN, kw)
        if chosen.resume_from:  # the resumed run's parameters and secrets, except those given now
            from nb2prod import api

            before = api.get_run(chosen.resume_from)["options"]
            chosen.parameters, chosen.secrets = secret.resumed(before, chosen.parameters, chosen.secrets)
        if detach:
            _detach(notebook, chosen, as_json)
        execute(notebook, chosen, as_json=as_json, quiet=quiet, run_id=run_id, origin=origin, source=source)
    except Nb2ProdError as exc:
        if not as_json:
            raise
        click.echo(json.dumps({"schema_version": RESULT_SCHEMA_VERSION, "run_id": run_id, "mlflow_run_id": None,
                               "status": "invalid", "duration_s": 0, "stages": {}, "error": exc.to_dict()}))
        stderr.print(f"[red]error:[/] {exc.message}")
        sys.exit(exc.exit_code)


def _detach(notebook: str, options: RunOptions, as_json: bool) -> None:
    """``--detach``: start the run (a Ray job with an http(s):// address), print its id, exit 0."""
    from nb2prod import api
    from nb2prod.errors import UsageError
    from nb2prod.runner import jobs

    if options.output_notebook or options.log_output:
        raise UsageError("--output-notebook and --log-output cannot be used with --detach (a detached run's executed "
                         "notebook is in its MLflow run; its logs: `nb2prod logs RUN_ID`)")
    address = jobs.detach_address(options.ray_address)
    if address and not jobs.is_jobs_address(address):
        raise UsageError(f"--detach runs the pipeline as a Ray job, which needs the cluster's Jobs API address "
                         f"(http(s)://HEAD:8265, the dashboard), not {address}; pass --ray-address http://HEAD:8265 "
                         "or set RAY_API_SERVER_ADDRESS")
    run_id = api.start_run(notebook, options, origin="cli")
    if as_json:
        click.echo(json.dumps({"schema_version": RESULT_SCHEMA_VERSION, "run_id": run_id, "status": "running",
                               "mlflow_run_id": None}))
    else:
        where = f"as Ray job {jobs.submission_id(run_id)} on {address}" if address else "in the background"
        stderr.print(f"run [bold]{run_id}[/] started {where}; follow it with `nb2prod status {run_id}`", soft_wrap=True)
    sys.exit(0)


@cli.command()
@click.argument("run_id")
@click_options(RESUME)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--quiet", is_flag=True, help="No live status.")
def resume(run_id: str, as_json: bool, quiet: bool, **kw: Any) -> None:
    """Rerun the failed and never-run stages of RUN_ID with the same parameters (and options, except those
    given here)."""
    from nb2prod import api

    from nb2prod.runner.detached import job_address

    record = api.get_run(run_id)
    chosen = RunOptions.from_dict({**record["options"], **from_click(RESUME, kw).non_defaults(),
                                   "resume_from": record["id"]})
    if job_address(record):  # a Ray job's run resumes as a Ray job, on the same cluster
        _detach(record["notebook"], chosen, as_json)
    execute(record["notebook"], chosen, as_json=as_json, quiet=quiet)


def execute(notebook: str, options: RunOptions, *, as_json: bool, quiet: bool, run_id: str | None = None,
            origin: str = "cli", source: dict[str, str] | None = None) -> None:
    """Run, render live status, print the result, exit 0/1/130 (``source``: see ``api.run``)."""
    from nb2prod.runner.cluster import without_format_checkers, without_serialization_addons

    without_format_checkers()
    without_serialization_addons()
    from nb2prod import api
    from nb2prod.cli.live import LiveStatus

    prepared_stages = list(api.prepare(notebook, options).spec.stages)
    if not quiet and not (options.ray_address or os.environ.get("RAY_ADDRESS")):
        from nb2prod.runner import cluster

        if cluster.status() is None:
            stderr.print("starting nb2prod's local Ray cluster (127.0.0.1 only; it stays warm for the next runs — "
                         "`nb2prod cluster down` stops it)")
    with LiveStatus(prepared_stages, enabled=not quiet) as live:
        record = api.run(notebook, options, run_id=run_id, origin=origin, observer=live, source=source)
    if as_json:
        click.echo(json.dumps(result_json(record)))
    _summary(record)
    if record["status"] == "cancelled":
        sys.exit(130)
    sys.exit(0 if succeeded(record) else 1)


def result_json(record: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` result object."""
    return {"schema_version": RESULT_SCHEMA_VERSION, "run_id": record["id"], "mlflow_run_id": record["mlflow_run_id"],
            "status": record["status"], "duration_s": record["duration_s"],
            "stages": {name: {"status": s["status"], "duration_s": s["duration_s"], "attempts": s["attempts"],
                              "error": {k: s["error"].get(k) for k in ("type", "message", "cell_index", "line")}
                              if s["error"] else None}
                       for name, s in record["stages"].items()},
            "error": {k: record["error"].get(k) for k in ("stage", "type", "message")} if record["error"] else None,
            "gate": record["gate"], "promotion": record["promotion"], "drift": record["drift"]}


def _summary(record: dict[str, Any]) -> None:
    for name, stage in record["stages"].items():
        error = stage["error"]
        if stage["status"] == "failed" and error:
            where = f" ({location(error)})" if location(error) else ""
            stderr.print(f"[red]stage {escape(repr(name))} failed[/]{where}: {escape(error['type'])}: "
                         f"{escape(error['message'])}", markup=True, soft_wrap=True)
            if error.get("traceback"):
                stderr.print(error["traceback"].rstrip(), markup=False, highlight=False, soft_wrap=True)
    print_checks(record)
    color = {"done": "green", "failed": "red", "cancelled": "magenta"}.get(record["status"], "yellow")
    stderr.print(f"run [bold]{record['id']}[/] [{color}]{record['status']}[/] in {record['duration_s']:.2f}s — "
                 f"MLflow run {record['mlflow_run_id']} at {escape(str(record['tracking_uri']))} (see `nb2prod ui`)",
                 markup=True, soft_wrap=True)
