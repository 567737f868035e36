"""``%nb2prod check``'s picture: the stage DAG of a spec (``api.check``) as inline SVG, with the variables
flowing along each edge, plus validation errors with their cell numbers; and the same as plain text."""

from __future__ import annotations

import html
from typing import Any

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD, LANE = 150, 44, 110, 26, 16, 20


def edge_variables(spec: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """For each edge, the variables the downstream stage reads from the upstream one (its latest provider)."""
    order = list(spec["stages"])
    flows: dict[tuple[str, str], list[str]] = {tuple(e): [] for e in spec["edges"]}  # type: ignore[misc]
    for name, stage in spec["stages"].items():
        upstream = sorted(stage.get("upstream", []), key=order.index)
        for var in stage.get("inputs", []):
            providers = [u for u in upstream if var in spec["stages"][u].get("outputs", [])]
            if providers:
                flows.setdefault((providers[-1], name), []).append(var)
    return {edge: sorted(vs) for edge, vs in flows.items()}


def _layers(spec: dict[str, Any]) -> dict[str, int]:
    layer: dict[str, int] = {}
    parents: dict[str, list[str]] = {name: [] for name in spec["stages"]}
    for a, b in spec["edges"]:
        parents.setdefault(b, []).append(a)
    for name in spec["stages"]:  # stages come in topological order
        layer[name] = 1 + max((layer.get(p, 0) for p in parents[name]), default=-1)
    return layer


def issue_text(issue: dict[str, Any]) -> str:
    where = []
    if issue.get("cell_index") is not None:
        where.append(f"cell {issue['cell_index']}")
    if issue.get("stage"):
        where.append(f"stage {issue['stage']!r}")
    return (", ".join(where) + ": " if where else "") + issue["message"]


def dag_svg(spec: dict[str, Any]) -> str:
    """An SVG of the stages (boxes with their cells) and edges (labelled with the variables)."""
    layers = _layers(spec)
    slots: dict[int, int] = {}
    pos: dict[str, tuple[float, float]] = {}
    for name in spec["stages"]:
        col = layers[name]
        row = slots.get(col, 0)
        slots[col] = row + 1
        pos[name] = (PAD + col * (NODE_W + COL_GAP), PAD + row * (NODE_H + ROW_GAP))
    flows = edge_variables(spec)
    skips = [e for e in flows if e[0] in pos and e[1] in pos and layers[e[1]] - layers[e[0]] > 1]
    width = PAD * 2 + (max(layers.values(), default=0) + 1) * (NODE_W + COL_GAP) - COL_GAP
    nodes_bottom = PAD + max(slots.values(), default=1) * (NODE_H + ROW_GAP) - ROW_GAP
    height = nodes_bottom + PAD + LANE * len(skips)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="nb2prod-dag" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             '<defs><marker id="nb2prod-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0 0 L10 5 L0 10 z" fill="#777"/></marker></defs>']
    for (a, b), variables in flows.items():
        if a not in pos or b not in pos:
            continue
        x1, y1 = pos[a][0] + NODE_W, pos[a][1] + NODE_H / 2
        x2, y2 = pos[b][0], pos[b][1] + NODE_H / 2
        mid = (x1 + x2) / 2
        if (a, b) in skips:  # past other layers: along a lane under the nodes
            lane = nodes_bottom + LANE * (skips.index((a, b)) + 1)
            d = (f"M{x1:.0f} {y1:.0f} C{x1 + 40:.0f} {y1:.0f} {x1 + 30:.0f} {lane} {x1 + 60:.0f} {lane} "
                 f"L{x2 - 60:.0f} {lane} C{x2 - 30:.0f} {lane} {x2 - 40:.0f} {y2:.0f} {x2 - 2:.0f} {y2:.0f}")
            label_y, limit = lane - 4, 60
        else:
            d = f"M{x1:.0f} {y1:.0f} C{mid:.0f} {y1:.0f} {mid:.0f} {y2:.0f} {x2 - 2:.0f} {y2:.0f}"
            label_y, limit = (y1 + y2) / 2 - 4, 22
        label = ", ".join(variables) or "(after)"
        short = label if len(label) <= limit else label[:limit - 2] + "…"
        parts.append(f'<g class="nb2prod-edge" data-from="{html.escape(a)}" data-to="{html.escape(b)}">'
                     f'<title>{html.escape(a)} → {html.escape(b)}: {html.escape(label)}</title>'
                     f'<path d="{d}" fill="none" stroke="#777" marker-end="url(#nb2prod-arrow)"/>'
                     f'<text x="{mid:.0f}" y="{label_y:.0f}" text-anchor="middle" fill="#555" '
                     f'font-size="10">{html.escape(short)}</text></g>')
    failing = {e.get("stage") for e in spec.get("errors", [])}
    for name, (x, y) in pos.items():
        stage = spec["stages"][name]
        cells = stage.get("cells", [])
        colour = "#c62828" if name in failing else "#3b6fb6"
        parts.append(f'<g class="nb2prod-node" data-stage="{html.escape(name)}">'
                     f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="#f4f7fb" '
                     f'stroke="{colour}"/><text x="{x + NODE_W / 2}" y="{y + 18}" text-anchor="middle" '
                     f'font-weight="bold">{html.escape(name)}</text><text x="{x + NODE_W / 2}" y="{y + 34}" '
                     f'text-anchor="middle" fill="#666" font-size="10">'
                     f'cell{"s" if len(cells) != 1 else ""} {", ".join(map(str, cells))}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


class DagView:
    """What ``%nb2prod check`` displays: HTML (SVG + lists) in a notebook, text elsewhere."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def _repr_html_(self) -> str:
        spec = self.spec
        out = [f'<div class="nb2prod-check"><div><b>{html.escape(spec.get("notebook") or "")}</b> — '
               f'{self._summary()}</div>']
        if spec["stages"]:
            out.append(dag_svg(spec))
        if spec.get("parameters"):
            params = ", ".join(f"<code>{html.escape(n)}</code>: {html.escape(p['type'])} = "
                               f"<code>{html.escape(repr(p['default']))}</code>"
                               for n, p in spec["parameters"].items())
            out.append(f"<div>parameters: {params}</div>")
        flows = edge_variables(spec)
        if flows:
            rows = "".join(f"<tr><td>{html.escape(a)} → {html.escape(b)}</td>"
                           f"<td>{html.escape(', '.join(v))}</td></tr>" for (a, b), v in flows.items())
            out.append(f'<details><summary>edges</summary><table class="nb2prod-edges">{rows}</table></details>')
        for kind, colour in (("errors", "#c62828"), ("warnings", "#d68a00")):
            items = "".join(f'<li data-cell="{i.get("cell_index")}">{html.escape(issue_text(i))}</li>'
                            for i in spec.get(kind, []))
            if items:
                out.append(f'<div class="nb2prod-{kind}" style="color:{colour}">{kind}:<ul>{items}</ul></div>')
        out.append("</div>")
        return "".join(out)

    def _summary(self) -> str:
        spec = self.spec
        if spec.get("errors"):
            return f"{len(spec['errors'])} error(s)"
        return f"ok: {len(spec['stages'])} stage(s), {len(spec['edges'])} edge(s)"

    def __repr__(self) -> str:
        spec = self.spec
        lines = [f"{spec.get('notebook')}: {self._summary()}"]
        if spec.get("parameters"):
            lines.append("parameters: " + ", ".join(f"{n}={p['default']!r} ({p['type']})"
                                                    for n, p in spec["parameters"].items()))
        for name, stage in spec["stages"].items():
            lines.append(f"stage {name} (cells {', '.join(map(str, stage.get('cells', [])))})")
        for (a, b), variables in edge_variables(spec).items():
            lines.append(f"  {a} -> {b}: {', '.join(variables) or '(after)'}")
        lines += [f"error: {issue_text(i)}" for i in spec.get("errors", [])]
        lines += [f"warning: {issue_text(i)}" for i in spec.get("warnings", [])]
        return "\n".join(lines)
