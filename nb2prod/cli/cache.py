"""``nb2prod cache ls|info|clear``: the stage-output cache."""

from __future__ import annotations

import json
import time

import click
from rich.table import Table

from nb2prod.cli import cli
from nb2prod.cli.render import stdout


@cli.group()
def cache() -> None:
    """The content-addressed cache of stage outputs (bounded, least recently used evicted first)."""


def _dir_option(fn):
    return click.option("--cache-dir", help="Cache location (default: NB2PROD_CACHE_DIR or NB2PROD_HOME/cache).")(fn)


@cache.command("ls")
@_dir_option
@click.option("--json", "as_json", is_flag=True)
def ls(cache_dir: str | None, as_json: bool) -> None:
    """Entries, most recently used first."""
    from nb2prod import cache as store

    entries = store.entries(store.cache_dir(cache_dir, create=False))
    if as_json:
        click.echo(json.dumps([{k: v for k, v in e.items() if k != "cells"} for e in entries]))
        return
    table = Table("key", "stage", "run", "size", "last used", box=None, pad_edge=False)
    for e in entries:
        table.add_row(e["key"][:16], e.get("stage", ""), e.get("run_id", ""), _size(e.get("size", 0)),
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.get("last_used", 0))))
    stdout.print(table)


@cache.command()
@_dir_option
def info(cache_dir: str | None) -> None:
    """Location, size, bound and entry count."""
    from nb2prod import cache as store

    directory = store.cache_dir(cache_dir, create=False)
    entries = store.entries(directory)
    click.echo(f"location: {directory}\nentries:  {len(entries)}\nsize:     {_size(sum(e.get('size', 0) for e in entries))}"
               f"\nbound:    {_size(store.max_bytes())} (NB2PROD_CACHE_MAX_BYTES)")


@cache.command()
@_dir_option
def clear(cache_dir: str | None) -> None:
    """Remove every entry."""
    from nb2prod import cache as store

    click.echo(f"removed {store.clear(store.cache_dir(cache_dir))} entries")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
