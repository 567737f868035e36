"""Preparing a run: the notebook (or compiled pipeline.json) and the run options validated into a
:class:`Prepared` request, before anything is recorded or runs. Shared by the api (``nb2prod.api.prepare``)
and the scheduler, which checks a schedule's options when it is added (the seam that keeps ``scheduling``
below ``api``)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod import secret
from nb2prod.contracts import RunOptions
from nb2prod.core.builder import build_spec, read_notebook, real_path
from nb2prod.core.params import infer_value, resolved_parameters, validate_parameters
from nb2prod.core.spec import PipelineSpec, load_spec
from nb2prod.errors import NotebookError, UsageError, ValidationError
from nb2prod.home import default_tracking_uri


@dataclass
class Prepared:
    """A validated run request: spec, notebook, checked parameters."""

    path: Path
    spec: PipelineSpec
    notebook: dict[str, Any]
    sha256: str
    overrides: dict[str, Any]
    shown: dict[str, Any]
    secret_values: list[str]
    env: dict[str, str]
    tracking_uri: str
    experiment: str


def prepare(path: str | Path, options: RunOptions) -> Prepared:
    """Validate the notebook (or compiled pipeline.json) and the options; raise on any problem."""
    path = real_path(path)
    if path.suffix == ".json":
        spec = load_spec(path)
        notebook = _notebook_for(spec)
        raw = path.read_bytes()
    else:
        raw = _read_bytes(path)
        notebook = read_notebook(path)
        spec = build_spec(path)
    if spec.errors:
        listing = "\n".join(f"  - {e}" for e in spec.errors)
        raise ValidationError(f"{path.name} is not a valid pipeline:\n{listing}",
                              errors=[e.__dict__ for e in spec.errors])
    _check_paths(options, {path, Path(spec.notebook)})
    for name in [*options.force, *options.stages]:
        if name not in spec.stages:
            raise UsageError(f"unknown stage {name!r}; the stages are: {', '.join(spec.stages)}")
    if options.downstream and not options.stages:
        raise UsageError("--downstream extends --stage: name the stage(s) to rerun with --stage")
    _check_mlops(spec, options)
    hidden = secret.names(options.secrets)
    unknown_secrets = [s for s in secret.references(options.secrets) if s not in spec.parameters]
    if unknown_secrets:
        raise UsageError(f"--secret names unknown parameter(s): {', '.join(unknown_secrets)}")
    from_env = {name: text if spec.parameters[name].type in ("str", "any", "None") else infer_value(text)
                for name, text in secret.from_environment(options.secrets, options.parameters).items()}
    overrides = validate_parameters(spec, {**options.parameters, **from_env}, hidden=hidden)
    missing_env = [name for name in options.env if name not in os.environ]
    if missing_env:
        raise UsageError(f"--env names variable(s) not set in this environment: {', '.join(missing_env)}")
    env = {name: os.environ[name] for name in options.env}
    shown = secret.stored_parameters(resolved_parameters(spec, overrides), options.secrets)
    secret_values = [str(overrides[k]) for k in hidden if k in overrides and str(overrides[k])]
    secret_values += [v for v in env.values() if v]
    return Prepared(path, spec, notebook, hashlib.sha256(raw).hexdigest(), overrides, shown, secret_values, env,
                    _absolute_uri(options.tracking_uri or default_tracking_uri()),
                    options.experiment or Path(spec.notebook).stem)


def _check_mlops(spec: PipelineSpec, options: RunOptions) -> None:
    """--promote needs a register: tag; gates and thresholds must parse (UsageError, exit 2)."""
    from nb2prod.mlops.gates import check_options

    check_options(options)
    if options.promote and not any(s.register for s in spec.stages.values()):
        raise UsageError(f"--promote {options.promote}: the notebook registers no model; tag the stage that "
                         "binds it register:VAR or register:VAR=MODEL")


def _check_paths(options: RunOptions, sources: set[Path]) -> None:
    """Make the path-valued options absolute (a detached runner has another working directory) and check that
    ``output_notebook`` can be written and is not one of the run's ``sources``, before anything runs."""
    from nb2prod.contracts.options import path_fields

    for name in path_fields():
        value = getattr(options, name)
        if value:
            setattr(options, name, str(Path(value).expanduser().absolute()))
    if options.cache_dir:
        from nb2prod import cache

        cache.cache_dir(options.cache_dir)  # a directory that is not a cache is refused here, not mid-run
    if options.output_notebook:
        check_output_notebook(options.output_notebook, sources)


def check_output_notebook(path: str, sources: set[Path]) -> None:
    """A UsageError unless an executed notebook can be written at ``path``, which is not one of ``sources``."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--output-notebook {target} is a directory; give the path of the notebook file to write")
    if real_path(target) in sources:
        raise UsageError(f"--output-notebook {target} is the notebook being run; the executed copy would replace "
                         "it: give another path")
    if not target.parent.is_dir():
        what = "is a file, not a directory" if target.parent.exists() else "does not exist"
        raise UsageError(f"--output-notebook {target}: {target.parent} {what}")
    if not os.access(target.parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"--output-notebook {target}: not writable")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such file") from None
    except OSError as exc:
        raise NotebookError(f"{path}: cannot be read ({exc.strerror})") from None


def _notebook_for(spec: PipelineSpec) -> dict[str, Any]:
    if Path(spec.notebook).is_file():
        return read_notebook(spec.notebook)
    import nbformat

    nb = nbformat.v4.new_notebook()
    last = max(spec.cells, default=-1)
    nb.cells = [nbformat.v4.new_code_cell(spec.cells[i].source if i in spec.cells else "") for i in range(last + 1)]
    return nb


def _absolute_uri(uri: str) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{real_path(uri[len('sqlite:///'):])}"
    if "://" not in uri and not uri.startswith("file:"):
        return str(real_path(uri))
    return uri


def typed_values(notebook: str, rendered: dict[str, Any]) -> dict[str, Any]:
    """Rendered text values typed as papermill's ``-p`` does, except that a parameter the notebook declares
    ``str`` keeps its text (``{{ scheduled_time:%Y%m%d }}`` stays "20260301", not an int)."""
    declared = (load_spec(Path(notebook)) if notebook.endswith(".json") else build_spec(notebook)).parameters
    values = {}
    for name, value in rendered.items():
        inferred = infer_value(value) if isinstance(value, str) else value
        keep = isinstance(value, str) and name in declared and declared[name].type == "str"
        values[name] = value if keep else inferred
    return values
