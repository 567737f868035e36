/**
 * Stage markers on cells: the `stage:NAME` tag written by "Mark as stage…", and a badge on every
 * cell showing its stage (or role) so the pipeline's structure is visible while editing.
 */
import { Cell, ICellModel } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';

/** Stage names the core accepts (nb2prod/core/grammar.py: NAME). */
export const STAGE_NAME = /^[A-Za-z0-9_-]+$/;
const STAGE_TAG = /^stage:([A-Za-z0-9_-]+)$/;
const KALE_TAG = /^(?:step|block):([_a-z][_a-z0-9]*)$/;
const STAGE_MAGIC = /^\s*%%stage\s+([A-Za-z0-9_-]+)/;
const ROLE_TAGS: Record<string, string> = {
  parameters: 'parameters',
  setup: 'setup',
  skip: 'skip',
  'pipeline-parameters': 'parameters',
  imports: 'setup',
  functions: 'setup'
};
const BADGE_CLASS = 'nb2prod-StageBadge';

function tagsOf(model: ICellModel): string[] {
  const tags = model.getMetadata('tags');
  // trimmed, as the Python grammar reads them (nb2prod/core/grammar.py: parse_tags)
  return Array.isArray(tags)
    ? tags.filter((t): t is string => typeof t === 'string').map(t => t.trim())
    : [];
}

/** The stage name a cell declares (tag, Kale tag or `%%stage` header), if any. */
export function stageOf(model: ICellModel): string | null {
  for (const tag of tagsOf(model)) {
    const match = STAGE_TAG.exec(tag) ?? KALE_TAG.exec(tag);
    if (match) {
      return match[1];
    }
  }
  if (model.type === 'code') {
    const match = STAGE_MAGIC.exec(model.sharedModel.getSource().split('\n', 1)[0]);
    if (match) {
      return match[1];
    }
  }
  return null;
}

/** Replace the cell's `stage:` tags with `stage:NAME` (an empty name removes them). */
export function setStage(model: ICellModel, name: string): void {
  const tags = tagsOf(model).filter(t => !STAGE_TAG.test(t));
  if (name) {
    tags.push(`stage:${name}`);
  }
  if (tags.length) {
    model.setMetadata('tags', tags);
  } else {
    model.deleteMetadata('tags');
  }
}

function badgeText(model: ICellModel): { text: string; role: string } | null {
  const stage = stageOf(model);
  if (stage) {
    return { text: stage, role: 'stage' };
  }
  for (const tag of tagsOf(model)) {
    if (ROLE_TAGS[tag]) {
      return { text: ROLE_TAGS[tag], role: ROLE_TAGS[tag] };
    }
  }
  return null;
}

function updateBadge(cell: Cell): void {
  const info = badgeText(cell.model);
  const host = cell.node.querySelector<HTMLElement>(':scope > .jp-Cell-inputWrapper') ?? cell.node;
  let badge = host.querySelector<HTMLElement>(`:scope > .${BADGE_CLASS}`);
  if (!info) {
    badge?.remove();
    return;
  }
  if (!badge) {
    badge = document.createElement('div');
    badge.className = BADGE_CLASS;
    host.appendChild(badge);
  }
  badge.textContent = info.text;
  badge.dataset.role = info.role;
  badge.title = info.role === 'stage' ? `pipeline stage "${info.text}"` : `${info.text} cell`;
}

/** Keep badges up to date on one notebook panel. */
export function trackBadges(panel: NotebookPanel): void {
  const watched = new WeakSet<ICellModel>();
  let pending = 0;
  const refresh = () => {
    if (pending) {
      return;
    }
    pending = window.setTimeout(() => {
      pending = 0;
      if (panel.isDisposed) {
        return;
      }
      for (const cell of panel.content.widgets) {
        if (!watched.has(cell.model)) {
          watched.add(cell.model);
          cell.model.metadataChanged.connect(refresh);
          cell.model.contentChanged.connect(refresh);
        }
        updateBadge(cell);
      }
    }, 150);
  };
  void panel.context.ready.then(() => {
    panel.content.model?.cells.changed.connect(refresh);
    refresh();
  });
  panel.content.modelChanged.connect(() => {
    panel.content.model?.cells.changed.connect(refresh);
    refresh();
  });
}
