"""``nb2prod check`` and ``nb2prod compile``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from nb2prod.cli import cli
from nb2prod.cli.render import print_issues, print_spec


@cli.command()
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (the pipeline.json schema) on stdout; a list of them for several notebooks.")
def check(notebooks: tuple[str, ...], as_json: bool) -> None:
    """Validate NOTEBOOKS (one or more) and print their stage DAGs; exit 1 if any has errors."""
    results = [_check_one(notebook, as_json) for notebook in notebooks]
    if as_json:
        click.echo(json.dumps(results[0][0] if len(results) == 1 else [data for data, _ in results]))
    if any(failed for _, failed in results):
        raise SystemExit(1)


def _check_one(notebook: str, as_json: bool) -> tuple[dict, bool]:
    from nb2prod.core.builder import build_spec
    from nb2prod.core.spec import SCHEMA_VERSION, Issue
    from nb2prod.errors import NotebookError

    try:
        spec = build_spec(notebook)
        data = spec.to_dict()
        errors = spec.errors
    except NotebookError as exc:
        errors = [Issue(exc.message)]
        data = {"schema_version": SCHEMA_VERSION, "notebook": str(Path(notebook).absolute()), "dialect": None,
                "parameters": {}, "stages": {}, "edges": [], "warnings": [],
                "errors": [{"message": exc.message, "cell_index": None, "cell_id": None, "stage": None}]}
        spec = None
    if as_json:
        print_issues(errors, [] if spec is None else spec.warnings)
    elif spec is not None:
        print_spec(spec)
    else:
        print_issues(errors, [])
    return data, bool(errors)


@cli.command("compile")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False), help="Directory to write into.")
def compile_(notebook: str, output_dir: str) -> None:
    """Write pipeline.json and a standalone pipeline.py for NOTEBOOK into DIR."""
    from nb2prod.core.compile import compile_notebook

    written = compile_notebook(notebook, output_dir)
    for path in written:
        click.echo(str(path))
