"""``nb2prod runs``, ``status``, ``logs``, ``cancel``: read and act on the run store."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from nb2prod.cli import cli
from nb2prod.cli.render import check_lines, stdout


@cli.command()
@click.argument("notebook", required=False, type=click.Path(dir_okay=False))
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
def runs(notebook: str | None, limit: int, as_json: bool) -> None:
    """Recent runs (of NOTEBOOK), newest first."""
    from nb2prod import api

    records = api.list_runs(notebook, limit)
    if as_json:
        click.echo(json.dumps(records))
        return
    table = Table("run", "status", "gate", "notebook", "started", "duration", "MLflow run", box=None, pad_edge=False)
    for r in records:
        gate = r["gate"]["status"] if r["gate"]["status"] != "none" else ""
        gate += " drifted" if (r.get("drift") or {}).get("drifted") else ""
        table.add_row(r["id"], r["status"], gate.strip(), escape(r["notebook"]), (r["started_at"] or "")[:19],
                      f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else "", r["mlflow_run_id"] or "")
    stdout.print(table)


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
def status(run_id: str, as_json: bool) -> None:
    """Status of RUN_ID (nb2prod or MLflow run id) and its stages."""
    from nb2prod import api
    from nb2prod.errors import Nb2ProdError

    try:
        r = api.get_run(run_id)
    except Nb2ProdError as exc:
        if as_json:  # exactly one JSON object on stdout, as `run --json` and `check --json` print
            click.echo(json.dumps(exc.to_dict()))
        raise
    if as_json:
        click.echo(json.dumps(r))
        return
    stdout.print(f"run [bold]{r['id']}[/] {r['status']} — {escape(r['notebook'])}\nMLflow run {r['mlflow_run_id']} "
                 f"({escape(str(r['tracking_uri']))})", soft_wrap=True)
    table = Table("stage", "status", "attempts", "duration", "error", box=None, pad_edge=False)
    for name, s in r["stages"].items():
        error = s["error"]
        text = f"cell {error.get('cell_index')}: {error['type']}: {error['message']}" if error else ""
        table.add_row(escape(name), s["status"], str(s["attempts"]),
                      f"{s['duration_s']:.2f}s" if s["duration_s"] is not None else "", escape(text))
    stdout.print(table)
    for line in check_lines(r):
        stdout.print(line, soft_wrap=True)


@cli.command()
@click.argument("run_id")
@click.argument("stage", required=False)
def logs(run_id: str, stage: str | None) -> None:
    """Captured stdout/stderr of RUN_ID's stages (or of STAGE)."""
    from nb2prod import api
    from nb2prod.errors import UsageError

    record = api.get_run(run_id)
    names = [stage] if stage is not None else list(record["stages"])
    if stage is not None and stage not in record["stages"]:
        raise UsageError(f"run {record['id']} has no stage {stage!r}; its stages: {', '.join(record['stages'])}")
    for name in names:
        log = api.stage_log(record["id"], name)
        if stage is None:
            click.secho(f"==> {name} <==", bold=True)
        if log is not None:
            click.echo(log, nl=False)
        else:  # never ran, still running, cancelled, or a detached run whose tracking server has no log yet
            click.echo(f"({name}: no output captured; the stage is {record['stages'][name]['status']})", err=True)


@cli.command()
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Cancel RUN_ID: its running stages are stopped, the run ends `cancelled`."""
    from nb2prod import api

    record = api.get_run(run_id)
    if record["status"] != "running":
        click.echo(f"run {record['id']} already ended ({record['status']}); nothing to cancel")
        return
    api.cancel_run(record["id"])
    click.echo(f"cancel requested for run {record['id']}: its running stages stop, then it ends `cancelled`")
