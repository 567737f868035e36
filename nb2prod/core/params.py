"""Parameters the papermill way: ``-p`` / ``-r`` / ``-f`` / ``-y``, then checked against the notebook.

Precedence (as papermill's CLI): YAML files (``-f``) < YAML strings (``-y``) < ``-p`` < ``-r``.
Values stay values: they are never spliced into source code.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any, Iterable

from nb2prod.core.spec import Parameter, PipelineSpec
from nb2prod.errors import ParameterError


def infer_value(text: str) -> Any:
    """papermill's ``-p`` inference: True/False/None, int, float, else the string itself."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def collect_parameters(
    params: Iterable[tuple[str, str]] = (),
    raw: Iterable[tuple[str, str]] = (),
    files: Iterable[str | Path] = (),
    yamls: Iterable[str] = (),
) -> dict[str, Any]:
    """Merge command-line parameters with papermill's precedence."""
    merged: dict[str, Any] = {}
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ParameterError(f"cannot read parameters file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ParameterError(f"cannot read parameters file {path}: it is not UTF-8 text (a YAML file is)") from None
        merged.update(_load_yaml(text, str(path)))
    for text in yamls:
        merged.update(_load_yaml(text, "-y"))
    for name, value in params:
        merged[name] = infer_value(value)
    for name, value in raw:
        merged[name] = value
    return merged


def _load_yaml(text: str, origin: str) -> dict[str, Any]:
    import yaml

    class NoDatesSafeLoader(yaml.SafeLoader):
        """papermill's loader (dates stay strings), except that a key given twice is an error, not the last wins."""

        def construct_mapping(self, node, deep=False):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` then keys of its own: those override, as YAML means
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, Hashable) and key in seen:
                    where = f"lines {seen[key]} and {line}" if seen[key] != line else f"line {line}"
                    raise ParameterError(f"parameters from {origin}: key {key!r} is given twice ({where}); keep one")
                if isinstance(key, Hashable):
                    seen[key] = line
            return super().construct_mapping(node, deep)

    NoDatesSafeLoader.yaml_implicit_resolvers = {
        key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    try:
        data = yaml.load(text, Loader=NoDatesSafeLoader)
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameters from {origin} are not valid YAML: {_yaml_reason(exc)}") from None
    except RecursionError:
        raise ParameterError(f"parameters from {origin} are nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError(f"parameters from {origin} must be a YAML mapping of NAME: VALUE")
    return data


def _yaml_reason(exc: Exception) -> str:
    """One line: what PyYAML found wrong, and where."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem:
        return str(exc).splitlines()[0]
    return f"{problem}" + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark else "")


def literal_type(value: object) -> str:
    """The type of a literal default: int, float, bool, str, None, list, dict; ``any`` for other
    literals and for lists/dicts that JSON cannot hold as they are (tuples, sets, non-string keys)."""
    if value is None:
        return "None"
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return kind.__name__ if kind not in (list, dict) or jsonable(value) == value else "any"
    return "any"


def jsonable(value: object) -> object:
    """A literal as JSON can hold it: tuples and sets become lists, keys strings, bytes their repr."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, (bytes, complex)):
        return repr(value)
    return value


def validate_parameters(spec: PipelineSpec, values: dict[str, Any], hidden: Iterable[str] = ()) -> dict[str, Any]:
    """Check names and types against the notebook's parameters; return the checked overrides.

    An int is accepted (and converted) where the default is a float; parameters whose default is
    None or not a literal (type ``any``) accept any value; every other mismatch is an error. The error for a
    parameter in ``hidden`` (secrets) names the types only, never the value or the default.
    """
    known, hidden = spec.parameters, set(hidden)
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            listing = ", ".join(f"{p.name} ({p.type})" for p in known.values()) or "none"
            raise ParameterError(f"unknown parameter {name!r}; the notebook's parameters are: {listing}")
        checked[name] = _coerce(known[name], value, name in hidden)
    return checked


def resolved_parameters(spec: PipelineSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """Every parameter's effective value: literal defaults updated with the overrides."""
    values = {p.name: p.default for p in spec.parameters.values() if p.type != "any"}
    values.update(overrides)
    return values


def _coerce(param: Parameter, value: Any, hidden: bool = False) -> Any:
    expected = param.type
    if expected in ("any", "None"):
        return value
    if expected == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    kinds = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}
    kind = kinds[expected]
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    hint = " (pass it with -r NAME VALUE to keep it a string)" if expected == "str" else ""
    if hidden:
        raise ParameterError(f"secret parameter {param.name!r} expects {expected}, got {type(value).__name__}{hint}")
    raise ParameterError(f"parameter {param.name!r} expects {expected} (default {param.default!r}), "
                         f"got {type(value).__name__} {value!r}{hint}")
