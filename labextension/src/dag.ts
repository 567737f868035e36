/**
 * Draw a pipeline's DAG as SVG. Layout comes from dagre (layered graph drawing); this module only
 * turns the laid-out boxes and edge polylines into SVG elements styled by JupyterLab's CSS variables.
 */
import dagre from '@dagrejs/dagre';

const SVG_NS = 'http://www.w3.org/2000/svg';
const NODE_HEIGHT = 34;
const CHAR_WIDTH = 7.5;
const NODE_PADDING = 28;

export interface IDagOptions {
  /** Stage names in topological order. */
  stages: string[];
  edges: [string, string][];
  /** Optional status per stage (adds `nb2prod-mod-<status>` to the node). */
  status?: Record<string, string>;
  /** Extra text under a stage name (e.g. its cells). */
  detail?: Record<string, string>;
  onClick?: (stage: string) => void;
}

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {}
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    el.setAttribute(key, String(value));
  }
  return el;
}

/** Lay out the graph with dagre and return an `<svg>` element sized to fit it. */
export function renderDag(options: IDagOptions): SVGSVGElement {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: 'LR', nodesep: 18, ranksep: 46, marginx: 8, marginy: 8 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const name of options.stages) {
    const detail = options.detail?.[name] ?? '';
    const text = Math.max(name.length, detail.length * 0.85);
    graph.setNode(name, {
      label: name,
      width: Math.max(72, text * CHAR_WIDTH + NODE_PADDING),
      height: detail ? NODE_HEIGHT + 12 : NODE_HEIGHT
    });
  }
  for (const [from, to] of options.edges) {
    if (graph.hasNode(from) && graph.hasNode(to)) {
      graph.setEdge(from, to);
    }
  }
  dagre.layout(graph);
  const { width = 0, height = 0 } = graph.graph();

  const root = svg('svg', {
    class: 'nb2prod-Dag',
    width: Math.ceil(width),
    height: Math.ceil(height),
    viewBox: `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`,
    role: 'img',
    'aria-label': `pipeline graph with ${options.stages.length} stages`
  });
  const defs = svg('defs');
  const marker = svg('marker', {
    id: 'nb2prod-arrow',
    viewBox: '0 0 10 10',
    refX: 9,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: 'auto-start-reverse'
  });
  marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'nb2prod-Dag-arrowhead' }));
  defs.appendChild(marker);
  root.appendChild(defs);

  for (const edge of graph.edges()) {
    const points = graph.edge(edge).points ?? [];
    if (points.length === 0) {
      continue;
    }
    const d = points
      .map((p, i) => `${i === 0 ? 'M' : 'L'} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`)
      .join(' ');
    const path = svg('path', { d, class: 'nb2prod-Dag-edge', 'marker-end': 'url(#nb2prod-arrow)' });
    path.dataset.from = edge.v;
    path.dataset.to = edge.w;
    root.appendChild(path);
  }

  for (const name of options.stages) {
    const node = graph.node(name);
    const status = options.status?.[name];
    const group = svg('g', {
      class: `nb2prod-Dag-node${status ? ` nb2prod-mod-${status}` : ''}`,
      transform: `translate(${(node.x - node.width / 2).toFixed(1)}, ${(node.y - node.height / 2).toFixed(1)})`
    });
    group.dataset.stage = name;
    group.appendChild(svg('rect', { width: node.width, height: node.height, rx: 5, ry: 5 }));
    const label = svg('text', {
      x: node.width / 2,
      y: options.detail?.[name] ? 16 : node.height / 2,
      'dominant-baseline': 'central',
      'text-anchor': 'middle',
      class: 'nb2prod-Dag-label'
    });
    label.textContent = name;
    group.appendChild(label);
    const detail = options.detail?.[name];
    if (detail) {
      const sub = svg('text', {
        x: node.width / 2,
        y: node.height - 12,
        'dominant-baseline': 'central',
        'text-anchor': 'middle',
        class: 'nb2prod-Dag-detail'
      });
      sub.textContent = detail;
      group.appendChild(sub);
    }
    const title = svg('title');
    title.textContent = status ? `${name}: ${status}` : name;
    group.appendChild(title);
    if (options.onClick) {
      const onClick = options.onClick;
      group.classList.add('nb2prod-mod-clickable');
      group.addEventListener('click', () => onClick(name));
    }
    root.appendChild(group);
  }
  return root;
}
