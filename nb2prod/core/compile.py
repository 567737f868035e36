"""``nb2prod compile``: ``pipeline.json`` (the spec with cell sources) and a standalone ``pipeline.py``."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from string import Template

from nb2prod import __version__
from nb2prod.core.builder import build_spec
from nb2prod.errors import UsageError, ValidationError


def compile_notebook(notebook: str | Path, output_dir: str | Path) -> list[Path]:
    """Write ``pipeline.json`` and ``pipeline.py`` for a valid notebook; return their paths."""
    spec = build_spec(notebook)
    if spec.errors:
        listing = "\n".join(f"  - {e}" for e in spec.errors)
        raise ValidationError(f"{Path(notebook).name} is not a valid pipeline:\n{listing}",
                              errors=[asdict(e) for e in spec.errors])
    out = Path(output_dir)
    template = Template(resources.files("nb2prod.core").joinpath("templates/pipeline.py.tmpl").read_text())
    # Comment lines only: no notebook name or default can break the generated Python.
    parameters = "\n".join(f"#   {p.name} = {p.default!r} ({p.type})" for p in spec.parameters.values()) or "#   none"
    spec_path, script = out / "pipeline.json", out / "pipeline.py"
    try:
        out.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(json.dumps(spec.to_dict(include_code=True), indent=1) + "\n")
        script.write_text(template.substitute(notebook_name=ascii(Path(notebook).name), version=__version__,
                                              parameters=parameters))
    except OSError as exc:
        raise UsageError(f"cannot write the compiled pipeline to {out}: {exc.strerror or exc}") from None
    return [spec_path, script]
