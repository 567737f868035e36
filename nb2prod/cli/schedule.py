"""``nb2prod schedule ...`` and ``nb2prod scheduler``."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading

import click
from rich.markup import escape
from rich.table import Table

from nb2prod.cli import cli
from nb2prod.cli.render import stderr, stdout
from nb2prod.contracts.options import SCHEDULE, click_options, from_click


@cli.group()
def schedule() -> None:
    """Cron schedules for notebooks and pipelines (fired by `nb2prod scheduler`)."""


@schedule.command()
@click.argument("name")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--cron", required=True, help="5-field cron expression, or @hourly/@daily/@weekly.")
@click.option("--tz", default="UTC", show_default=True, help="IANA timezone of the cron expression.")
@click_options(SCHEDULE)
@click.option("--mode", type=click.Choice(["pipeline", "notebook"]), default="pipeline", show_default=True,
              help="pipeline: the stage DAG on Ray; notebook: a plain papermill run of the whole notebook.")
@click.option("--catchup", type=click.Choice(["skip", "latest", "all"]), default="skip", show_default=True,
              help="What to do with fire times missed while no scheduler ran.")
@click.option("--catchup-max", type=click.IntRange(min=1), default=100, show_default=True,
              help="With --catchup all: run at most this many missed times (the newest).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--timeout", "timeout_s", type=float, help="Seconds before a run is cancelled (and failed).")
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--retry-backoff", "retry_backoff_s", type=float, default=30.0, show_default=True,
              help="Seconds before the first retry; doubles each retry.")
@click.option("--notify-url", help="Webhook called with a JSON body on failure.")
@click.option("--notify-command", help="Shell command run on failure (NB2PROD_* variables and the JSON on stdin).")
@click.option("--notify-on-success", is_flag=True, help="Notify on success too.")
@click.option("--json", "as_json", is_flag=True)
def add(name, notebook, cron, tz, mode, catchup, catchup_max, max_concurrent, timeout_s, retries,
        retry_backoff_s, notify_url, notify_command, notify_on_success, as_json, **run_options) -> None:
    """Add schedule NAME running NOTEBOOK on a cron expression. Nothing is stored when anything is invalid.

    -p and -r values may contain {{ scheduled_time [+|- N(d|h|m)][:FORMAT] }}; they are typed (papermill -p
    typing) at each fire, except for parameters the notebook declares str."""
    from nb2prod.scheduling import schedules

    options = from_click(SCHEDULE, run_options, typed=False).non_defaults()
    parameters = options.pop("parameters", {})
    row = schedules.add(name, notebook, cron, tz=tz, parameters=parameters, mode=mode, options=options,
                        catchup=catchup, catchup_max=catchup_max, max_concurrent=max_concurrent, timeout_s=timeout_s,
                        retries=retries, retry_backoff_s=retry_backoff_s, notify_url=notify_url,
                        notify_command=notify_command, notify_on_success=notify_on_success)
    if as_json:
        click.echo(json.dumps(row))
        return
    click.echo(f"added {name}: {row['description']} ({tz}); next fire times: {', '.join(row['next_fire_times_local'])}")
    _warn_without_scheduler()


def _warn_without_scheduler() -> None:
    from nb2prod.scheduling import schedules

    warning = schedules.schedulers()["warning"]
    if warning:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)


@schedule.command()
@click.argument("cron")
@click.option("--tz", default="UTC", show_default=True)
@click.option("-n", "count", default=5, show_default=True, help="How many fire times (1 to 50).")
def preview(cron: str, tz: str, count: int) -> None:
    """The next fire times of CRON (checks it, stores nothing)."""
    from nb2prod.scheduling import schedules

    result = schedules.preview(cron, tz, count)
    click.echo(f"{result['description']} ({tz})")
    for t in result["next_fire_times_local"]:
        click.echo(t)


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """Schedules with their next fire time and last status."""
    from nb2prod.scheduling import schedules

    rows = schedules.list_all()
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table("name", "cron", "when", "tz", "mode", "next fire (local)", "last status", box=None, pad_edge=False)
    for r in rows:
        when = r["description"] or f"[red]{escape(r['problem'])}[/]"
        table.add_row(escape(r["name"]) + (" (paused)" if r["paused"] else ""), escape(r["cron"]), when,
                      r["timezone"], r["mode"], "" if r["paused"] else (r["next_fire_times_local"] or [""])[0],
                      r["last_status"] or "")
    stdout.print(table)
    if rows:
        _warn_without_scheduler()


@schedule.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.option("-n", "--limit", default=50, show_default=True, help="How many fires, newest first (1 to 500).")
def show(name: str, as_json: bool, limit: int) -> None:
    """A schedule and its fire history (the audit log)."""
    from nb2prod.scheduling import schedules

    data = schedules.show(name, history=limit)
    if as_json:
        click.echo(json.dumps(data))
        return
    stdout.print(f"[bold]{escape(data['name'])}[/] {escape(data['cron'])} = "
                 f"{data['description'] or '[red]' + escape(data['problem']) + '[/]'} "
                 f"({data['timezone']}) {data['mode']} — "
                 f"{escape(data['notebook'])}{' (paused)' if data['paused'] else ''}\n"
                 f"next: {', '.join(data['next_fire_times_local'])}")
    table = Table("scheduled (UTC)", "status", "attempts", "started", "ended", "run", "MLflow run", "sha256",
                  "reason / error", box=None, pad_edge=False)
    for f in data["fires"]:
        table.add_row(f["scheduled_time"], f["status"], str(f["attempts"]), (f["started_at"] or "")[11:19],
                      (f["ended_at"] or "")[11:19], f["run_id"] or "", f["mlflow_run_id"] or "",
                      (f["notebook_sha256"] or "")[:10], escape(f["reason"] or f["error"] or ""))
    stdout.print(table)


@schedule.command()
@click.argument("name")
def pause(name: str) -> None:
    """Stop firing NAME."""
    from nb2prod.scheduling import schedules

    schedules.set_paused(name, True)
    click.echo(f"paused {name}")


@schedule.command("resume")
@click.argument("name")
def resume_(name: str) -> None:
    """Fire NAME again from now on."""
    from nb2prod.scheduling import schedules

    schedules.set_paused(name, False)
    click.echo(f"resumed {name}")


@schedule.command()
@click.argument("name")
def remove(name: str) -> None:
    """Delete NAME and its history."""
    from nb2prod.scheduling import schedules

    schedules.remove(name)
    click.echo(f"removed {name}")


@schedule.command("run-now")
@click.argument("name")
def run_now(name: str) -> None:
    """Fire NAME now."""
    from nb2prod.scheduling import schedules

    fire = schedules.run_now(name)
    click.echo(f"fired {name}: {fire['status']} run {fire['run_id']}")


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets NaN through (every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", ctx, param)
    return value


@cli.command()
@click.option("--once", is_flag=True, help="Fire what is due, wait for those runs, and exit (for cron/systemd).")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 3600), callback=_finite,
              help="Seconds between ticks.")
@click.option("--grace", "grace_s", type=click.FloatRange(0), callback=_finite,
              help="A fire time older than this many seconds when first seen was missed (catch-up applies). "
                   "Default 90; with --once, set it to the timer's period.")
def scheduler(once: bool, interval: float, grace_s: float | None) -> None:
    """Run the scheduler in the foreground (logs to stdout; SIGTERM/SIGINT stop it cleanly).

    Any number of schedulers may share one store: each fire time is claimed once. Runs are detached: stopping
    the scheduler does not stop them; the next scheduler adopts them."""
    from nb2prod.scheduling.loop import run_forever, run_once
    from nb2prod.scheduling.service import Scheduler

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s",
                        force=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if once:
        run_once(grace_s=grace_s, stop=stop)
        return
    run_forever(stop, interval, Scheduler(grace_s=grace_s))
