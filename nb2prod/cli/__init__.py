"""The ``nb2prod`` command line (click). Commands live in the sibling modules; heavy imports
happen inside commands so ``nb2prod --help`` stays fast.

Exit codes: 0 ok, 1 validation failed or a run failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

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
    from nb2prod.cli import cache, check, cluster, run, runs, schedule  # noqa: F401  (register commands)

    cli.main(args=argv, prog_name="nb2prod", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
