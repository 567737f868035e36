"""The ``%nb2prod params`` form: the notebook's parameters as typed ipywidgets with a Run button."""

from __future__ import annotations

import html
from typing import Any, Callable


class ParamsForm:
    """A form of the notebook's parameters (typed from the parameters cell, defaults filled in) with a Run
    button; ``on_run(parameters)`` gets the values that differ from the defaults."""

    def __init__(self, parameters: dict[str, dict[str, Any]], on_run: Callable[[dict[str, Any]], None],
                 initial: dict[str, Any] | None = None) -> None:
        import ipywidgets as w

        self.parameters = parameters
        self.on_run = on_run
        self.fields: dict[str, Any] = {}
        style = {"description_width": "10em"}
        for name, p in parameters.items():
            kind, default = p["type"], (initial or {}).get(name, p["default"])
            if kind == "bool":
                field = w.Checkbox(value=bool(default), description=name, style=style, indent=False)
            elif kind == "int":
                field = w.IntText(value=default, description=name, style=style)
            elif kind == "float":
                field = w.FloatText(value=default, description=name, style=style)
            elif kind == "str":
                field = w.Text(value=default, description=name, style=style)
            else:
                field = w.Text(value=repr(default), description=name, style=style, placeholder="Python literal")
            field.tooltip = f"{name}: {kind}"
            field.add_class(f"nb2prod-param-{name}")
            self.fields[name] = field
        self.button = w.Button(description="Run", button_style="primary", icon="play")
        self.button.add_class("nb2prod-run-button")
        self.message = w.HTML()
        self.output = w.Output()
        self.widget = w.VBox([w.HTML("<b>Parameters</b>" if parameters else "<i>no parameters cell</i>"),
                              *self.fields.values(), w.HBox([self.button, self.message]), self.output])
        self.widget.add_class("nb2prod-params")
        self.button.on_click(lambda _: self.submit())

    def values(self) -> dict[str, Any]:
        """The values that differ from the defaults (raises ValueError for a malformed literal)."""
        import ast

        changed = {}
        for name, field in self.fields.items():
            p = self.parameters[name]
            value = field.value
            if p["type"] not in ("bool", "int", "float", "str"):
                try:
                    value = ast.literal_eval(value)
                except (ValueError, SyntaxError):
                    if p["type"] not in ("any", "None"):
                        raise ValueError(f"{name}: not a Python literal: {field.value!r}") from None
            if value != p["default"]:
                changed[name] = value
        return changed

    def submit(self) -> None:
        """What the Run button does."""
        self.message.value = ""
        try:
            values = self.values()
        except ValueError as exc:
            self.message.value = f'<span style="color:#c62828">{html.escape(str(exc))}</span>'
            return
        self.output.clear_output()
        with self.output:
            self.on_run(values)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def params_text(parameters: dict[str, dict[str, Any]], given: dict[str, Any] | None = None) -> str:
    """The parameters as text (no widget frontend): each one's default, or the value ``given`` (``-p``)."""
    if not parameters:
        return "no parameters cell"
    given = given or {}
    lines = [f"  {name:<20} {p['type']:<6} " + (f"{given[name]!r} (given)" if name in given else f"{p['default']!r}")
             for name, p in parameters.items()]
    return "\n".join(["parameters (override with %nb2prod run -p NAME VALUE):", *lines])
