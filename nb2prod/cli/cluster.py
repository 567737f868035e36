"""``nb2prod cluster up|down|status`` and ``nb2prod ui``."""

from __future__ import annotations

import os
import sys

import click

from nb2prod.cli import cli
from nb2prod.errors import UsageError


@cli.group()
def cluster() -> None:
    """nb2prod's local Ray cluster (loopback-only, token auth), kept warm between runs; `up --ray-address` readies
    any other."""


@cluster.command()
@click.option("--num-cpus", type=int, help="CPUs to offer (default: all).")
@click.option("--num-gpus", type=int, help="GPUs to offer (default: detected).")
@click.option("--ray-address", help="A Ray cluster that is already running (yours, a team's): launch nb2prod's "
              "keeper and coordinator in it now, so that its first run does not wait for them.")
def up(num_cpus: int | None, num_gpus: int | None, ray_address: str | None) -> None:
    """Start the local cluster and warm the coordinator (MLflow store opened); with --ray-address, make another
    cluster ready for runs."""
    from nb2prod.runner import cluster as local

    if ray_address and (num_cpus is not None or num_gpus is not None):
        raise UsageError("--num-cpus and --num-gpus size the local cluster; a running cluster keeps its own")
    address = ray_address or local.start(num_cpus=num_cpus, num_gpus=num_gpus)
    local.connect(address)
    import ray

    from nb2prod.runner.coordinator import get_coordinator

    coordinator = get_coordinator(embedded=local.is_embedded(address))  # on another cluster: its keeper launched
    if ray_address:
        ray.get(coordinator.ready.remote())
        click.echo(f"nb2prod's coordinator is up in the Ray cluster at {address}")
    else:
        from nb2prod.home import default_tracking_uri

        ray.get(coordinator.warm.remote(default_tracking_uri()))
        click.echo(f"local Ray cluster up at {address}")


@cluster.command()
def down() -> None:
    """Stop the local cluster."""
    from nb2prod.runner import cluster as local

    click.echo("stopped" if local.stop() else "no local cluster was running")


@cluster.command("status")
def status_() -> None:
    """Whether the local cluster is up, and where."""
    from nb2prod.runner import cluster as local

    state = local.status()
    click.echo(f"up at {state['address']}" if state else "down")
    sys.exit(0 if state else 1)


@cli.command()
@click.option("--tracking-uri", help="MLflow store (default: nb2prod's).")
@click.option("--port", default=5000, show_default=True)
def ui(tracking_uri: str | None, port: int) -> None:
    """Start the MLflow UI on nb2prod's tracking store, on 127.0.0.1."""
    from nb2prod.home import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    click.echo(f"MLflow UI for {uri} at http://127.0.0.1:{port}", err=True)
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port)])
