"""``nb2prod schedule ...`` and ``nb2prod scheduler``."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading

import click
from rich.table import Table

from nb2prod.cli import cli
from nb2prod.cli.render import stdout


@cli.group()
def schedule() -> None:
    """Cron schedules for notebooks and pipelines (fired by `nb2prod scheduler`)."""


@schedule.command()
@click.argument("name")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--cron", required=True, help="5-field cron expression, or @hourly/@daily/@weekly.")
@click.option("--tz", default="UTC", show_default=True, help="IANA timezone of the cron expression.")
@click.option("-p", "--parameter", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Parameter; may contain {{ scheduled_time [+|- N(d|h|m)][:FORMAT] }}.")
@click.option("--mode", type=click.Choice(["pipeline", "notebook"]), default="pipeline", show_default=True)
@click.option("--catchup", type=click.Choice(["skip", "latest", "all"]), default="skip", show_default=True)
@click.option("--catchup-max", type=int, default=100, show_default=True)
@click.option("--max-concurrent", type=int, default=1, show_default=True)
@click.option("--timeout", "timeout_s", type=float, help="Seconds before a run is cancelled.")
@click.option("--retries", type=int, default=0, show_default=True)
@click.option("--notify-url", help="Webhook called with a JSON body on failure.")
@click.option("--notify-command", help="Shell command run on failure (NB2PROD_* variables describe the fire).")
@click.option("--notify-on-success", is_flag=True)
@click.option("--ray-address")
@click.option("--tracking-uri")
@click.option("--experiment")
@click.option("--gpu-fallback", type=click.Choice(["fail", "cpu"]), default="fail")
@click.option("--no-cache", is_flag=True)
def add(name, notebook, cron, tz, params, mode, catchup, catchup_max, max_concurrent, timeout_s, retries, notify_url,
        notify_command, notify_on_success, ray_address, tracking_uri, experiment, gpu_fallback, no_cache) -> None:
    """Add schedule NAME running NOTEBOOK on a cron expression."""
    from nb2prod.scheduling import schedules

    options = {k: v for k, v in {"ray_address": ray_address, "tracking_uri": tracking_uri, "experiment": experiment,
                                 "gpu_fallback": gpu_fallback, "no_cache": no_cache}.items() if v}
    row = schedules.add(name, notebook, cron, tz=tz, parameters=dict(params), mode=mode, options=options,
                        catchup=catchup, catchup_max=catchup_max, max_concurrent=max_concurrent, timeout_s=timeout_s,
                        retries=retries, notify_url=notify_url, notify_command=notify_command,
                        notify_on_success=notify_on_success)
    click.echo(f"added {name}; next fire times (UTC): {', '.join(row['next_fire_times'])}")


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """Schedules with their next fire time and last status."""
    from nb2prod.scheduling import schedules

    rows = schedules.list_all()
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table("name", "cron", "tz", "mode", "next fire (UTC)", "last status", box=None, pad_edge=False)
    for r in rows:
        table.add_row(r["name"] + (" [paused]" if r["paused"] else ""), r["cron"], r["timezone"], r["mode"],
                      (r["next_fire_times"] or [""])[0], r["last_status"] or "")
    stdout.print(table)


@schedule.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def show(name: str, as_json: bool) -> None:
    """A schedule and its fire history."""
    from nb2prod.scheduling import schedules

    data = schedules.show(name)
    if as_json:
        click.echo(json.dumps(data))
        return
    stdout.print(f"[bold]{data['name']}[/] {data['cron']} ({data['timezone']}) {data['mode']} — {data['notebook']}"
                 f"{' [paused]' if data['paused'] else ''}\nnext: {', '.join(data['next_fire_times'])}")
    table = Table("scheduled", "status", "attempts", "run", "MLflow run", "reason / error", box=None, pad_edge=False)
    for f in data["fires"]:
        table.add_row(f["scheduled_time"], f["status"], str(f["attempts"]), f["run_id"] or "", f["mlflow_run_id"] or "",
                      f["reason"] or f["error"] or "")
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


@cli.command()
@click.option("--once", is_flag=True, help="Fire what is due, wait for those runs, and exit (for cron/systemd).")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between ticks.")
def scheduler(once: bool, interval: float) -> None:
    """Run the scheduler in the foreground (logs to stdout; SIGTERM/SIGINT stop it cleanly)."""
    from nb2prod.scheduling.loop import run_forever, run_once

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s")
    if once:
        run_once()
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_forever(stop, interval)
