"""The ``nb2prod`` command line (click). Commands live in the sibling modules; heavy imports
happen inside commands so ``nb2prod --help`` stays fast.

Exit codes: 0 ok, 1 validation failed or a run failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from nb2prod import __version__
from nb2prod.errors import Nb2ProdError


class _Group(click.Group):
    """Maps nb2prod errors to a one-line message and its exit code; Ctrl-C to 130."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Nb2ProdError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nb2prod")
def cli() -> None:
    """Turn tagged Jupyter notebooks into pipelines on Ray, tracked in MLflow."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from nb2prod.cli import cache, check, ci, cluster, run, runs, schedule  # noqa: F401  (register commands)

    try:
        cli.main(args=argv, prog_name="nb2prod", standalone_mode=True)
    except SystemExit as exc:
        _exit_now_if_connected(exc.code)
        raise


def _exit_now_if_connected(code: int | str | None) -> None:
    """In a process that connected to Ray, exit without the driver's ``ray.shutdown()`` and the interpreter's
    teardown (together ~0.55 s of every ``nb2prod run``, a third of a warm run). Everything the command wrote
    (run store commits, files, terminal output) is done by now; the cluster sees the driver go either way."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say to it
            pass
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
