/**
 * The Pipelines side panel: the schedules (see schedulelist.ts), recent runs (from any front end on this
 * server), per-stage live status, errors that jump to their cell, MLflow links, cancel. Polls
 * `GET /nb2prod/runs` and `GET /nb2prod/schedules` while visible.
 */
import { PathExt } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { el } from './dom';
import { requestAPI, postAPI } from './handler';
import { ScheduleList } from './schedulelist';
import { IRunRecord, ISettings, IStageRecord, location } from './types';

export interface IPanelOptions {
  settings: () => ISettings;
  /** Open the notebook and select a cell. */
  openCell: (path: string, cellIndex: number | null) => void;
}

const TERMINAL = new Set(['done', 'failed', 'cancelled', 'interrupted']);

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)}ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  }
  const minutes = Math.floor(seconds / 60);
  return `${minutes}m ${Math.round(seconds % 60)}s`;
}

/** Small badges in a run's header: a failed gate, drifted data. */
export function checkBadges(run: IRunRecord): HTMLElement[] {
  const badges: HTMLElement[] = [];
  if (run.gate?.status === 'failed') {
    badges.push(el('span', 'nb2prod-Status nb2prod-mod-failed nb2prod-GateBadge', 'gate failed'));
  }
  if (run.drift?.drifted) {
    badges.push(el('span', 'nb2prod-Status nb2prod-mod-failed nb2prod-DriftBadge', 'drifted'));
  }
  return badges;
}

/** The gate, drift and promotion outcome as (level, text) lines, as the CLI prints them. */
export function checkLines(run: IRunRecord): [string, string][] {
  const lines: [string, string][] = [];
  if (run.gate && run.gate.status !== 'none') {
    lines.push([run.gate.status === 'passed' ? 'ok' : 'bad', `gate ${run.gate.status}: ${run.gate.reason}`]);
  }
  if (run.drift) {
    lines.push(run.drift.drifted ? ['bad', `drifted: ${run.drift.reason}`] : ['ok', `no drift: ${run.drift.reason}`]);
  }
  const p = run.promotion;
  if (p) {
    const what = p.model ? `${p.model} v${p.version}` : 'no model';
    lines.push([p.moved ? 'ok' : 'warn', `${what} ${p.moved ? 'promoted to' : 'not promoted to'} ${p.alias}: ${p.reason}`]);
  }
  return lines;
}

function formatTime(iso: string | null): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  return date.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** The MLflow UI link: the server's `mlflow_url`, else one built from the `mlflowUiUrl` setting. */
export function mlflowLink(run: IRunRecord, uiUrl: string): string | null {
  if (run.mlflow_url) {
    return run.mlflow_url;
  }
  if (uiUrl && run.mlflow_run_id && run.mlflow_experiment_id) {
    return `${uiUrl.replace(/\/+$/, '')}/#/experiments/${run.mlflow_experiment_id}/runs/${run.mlflow_run_id}`;
  }
  return null;
}

export class PipelinesPanel extends Widget {
  constructor(private readonly options: IPanelOptions) {
    super();
    this.id = 'nb2prod-pipelines';
    this.addClass('nb2prod-Pipelines');
    this.title.caption = 'Pipelines';
    const header = el('div', 'nb2prod-Pipelines-header');
    header.appendChild(el('h2', '', 'Pipelines'));
    const refresh = el('button', 'jp-Button jp-mod-minimal nb2prod-Pipelines-refresh', '⟳');
    refresh.title = 'Refresh';
    refresh.addEventListener('click', () => void this.refresh());
    header.appendChild(refresh);
    this._message = el('div', 'nb2prod-Pipelines-message');
    this._schedules = new ScheduleList({
      changed: () => void this.refresh(),
      selectRun: runId => this.select(runId)
    });
    this._list = el('div', 'nb2prod-Pipelines-list');
    this.node.append(header, this._message, this._schedules.node, el('h3', '', 'Runs'), this._list);
  }

  /** Show this run expanded (e.g. just after starting it). */
  select(runId: string): void {
    this._expanded.add(runId);
    void this.refresh();
  }

  /** Fetch the schedules and recent runs now and redraw what changed. */
  async refresh(): Promise<void> {
    try {
      const [runs] = await Promise.all([requestAPI<IRunRecord[]>('runs?limit=20'), this._schedules.refresh()]);
      this._message.textContent = runs.length
        ? ''
        : 'No runs yet. Open a tagged notebook and click Productionize.';
      this._draw(runs);
    } catch (error) {
      this._message.textContent = `Cannot reach nb2prod: ${(error as Error).message}`;
    }
  }

  protected onAfterShow(): void {
    this._schedule(0);
  }

  protected onBeforeHide(): void {
    this._stop();
  }

  protected onAfterAttach(): void {
    if (this.isVisible) {
      this._schedule(0);
    }
  }

  protected onBeforeDetach(): void {
    this._stop();
  }

  private _schedule(delay: number): void {
    this._stop();
    this._timer = window.setTimeout(async () => {
      this._timer = null;
      await this.refresh();
      if (this.isVisible && !this.isDisposed) {
        this._schedule(Math.max(250, this.options.settings().pollInterval || 1000));
      }
    }, delay);
  }

  private _stop(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _draw(runs: IRunRecord[]): void {
    const key = JSON.stringify([runs, [...this._expanded]]);
    if (key === this._lastKey) {
      return;
    }
    this._lastKey = key;
    // Expand the newest run by default, so a just-started run is visible at once.
    if (runs.length && !this._seenAny) {
      this._expanded.add(runs[0].id);
      this._seenAny = true;
    }
    this._list.replaceChildren(...runs.map(run => this._runNode(run)));
  }

  private _runNode(run: IRunRecord): HTMLElement {
    const expanded = this._expanded.has(run.id);
    const node = el('div', `nb2prod-Run nb2prod-mod-${run.status}`);
    node.dataset.runId = run.id;
    node.dataset.status = run.status;
    const head = el('div', 'nb2prod-Run-head');
    head.tabIndex = 0;
    head.setAttribute('role', 'button');
    head.setAttribute('aria-expanded', String(expanded));
    head.append(
      el('span', 'nb2prod-Run-caret', expanded ? '▾' : '▸'),
      el('span', `nb2prod-Status nb2prod-mod-${run.status}`, run.status),
      el('span', 'nb2prod-Run-name', PathExt.basename(run.path ?? run.notebook)),
      ...checkBadges(run),
      el('span', 'nb2prod-Run-time', formatDuration(run.duration_s))
    );
    head.title = `${run.id} · ${run.origin} · ${formatTime(run.created_at)}`;
    const toggle = () => {
      if (this._expanded.has(run.id)) {
        this._expanded.delete(run.id);
      } else {
        this._expanded.add(run.id);
      }
      this._lastKey = '';
      void this.refresh();
    };
    head.addEventListener('click', toggle);
    head.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        toggle();
      }
    });
    node.appendChild(head);
    if (!expanded) {
      return node;
    }
    const body = el('div', 'nb2prod-Run-body');
    const meta = el('div', 'nb2prod-Run-meta');
    meta.append(el('code', '', run.id), el('span', '', ` · ${run.origin} · ${formatTime(run.created_at)}`));
    body.appendChild(meta);
    const params = Object.entries(run.parameters ?? {});
    if (params.length) {
      body.appendChild(
        el('div', 'nb2prod-Run-params', params.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('  '))
      );
    }
    const table = el('table', 'nb2prod-Stages');
    const headRow = el('tr');
    for (const title of ['stage', 'status', 'time', 'tries']) {
      headRow.appendChild(el('th', '', title));
    }
    table.appendChild(headRow);
    for (const [name, stage] of Object.entries(run.stages)) {
      table.appendChild(this._stageRow(run, name, stage));
      if (stage.error) {
        table.appendChild(this._errorRow(run, name, stage));
      }
    }
    body.appendChild(table);
    for (const [level, text] of checkLines(run)) {
      body.appendChild(el('div', `nb2prod-Run-check nb2prod-mod-${level}`, text));
    }
    if (run.error && !Object.values(run.stages).some(s => s.error)) {
      body.appendChild(el('div', 'nb2prod-Run-error', run.error.message ?? JSON.stringify(run.error)));
    }
    const actions = el('div', 'nb2prod-Run-actions');
    const link = mlflowLink(run, this.options.settings().mlflowUiUrl);
    if (link) {
      const a = el('a', 'nb2prod-MlflowLink', 'Open in MLflow');
      a.href = link;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      actions.appendChild(a);
    } else if (run.mlflow_run_id) {
      actions.appendChild(el('span', 'nb2prod-Muted', `MLflow run ${run.mlflow_run_id.slice(0, 8)}`));
    }
    if (!TERMINAL.has(run.status)) {
      const cancel = el('button', 'jp-Button jp-mod-styled jp-mod-warn nb2prod-Cancel', 'Cancel');
      cancel.addEventListener('click', async event => {
        event.stopPropagation();
        cancel.disabled = true;
        try {
          await postAPI(`runs/${encodeURIComponent(run.id)}/cancel`, {});
        } catch (error) {
          this._message.textContent = (error as Error).message;
        }
        void this.refresh();
      });
      actions.appendChild(cancel);
    }
    body.appendChild(actions);
    node.appendChild(body);
    return node;
  }

  private _stageRow(run: IRunRecord, name: string, stage: IStageRecord): HTMLElement {
    const row = el('tr', `nb2prod-Stage nb2prod-mod-${stage.status}`);
    row.dataset.stage = name;
    row.dataset.status = stage.status;
    const attempts = stage.attempts + (stage.system_retries ? ` (+${stage.system_retries})` : '');
    row.append(
      el('td', 'nb2prod-Stage-name', name),
      el('td', '', ''),
      el('td', 'nb2prod-Stage-time', formatDuration(stage.duration_s)),
      el('td', 'nb2prod-Stage-attempts', stage.attempts ? attempts : '')
    );
    row.children[1].appendChild(el('span', `nb2prod-Status nb2prod-mod-${stage.status}`, stage.cached ? 'cached' : stage.status));
    return row;
  }

  private _errorRow(run: IRunRecord, name: string, stage: IStageRecord): HTMLElement {
    const error = stage.error!;
    const row = el('tr', 'nb2prod-Stage-errorRow');
    const cell = el('td');
    cell.colSpan = 4;
    const where = location(error) ? `${location(error)}: ` : '';
    const button = el('button', 'nb2prod-Stage-error', `${where}${error.type}: ${error.message}`);
    button.title = error.traceback ?? '';
    if (run.path) {
      const path = run.path;
      button.addEventListener('click', () => this.options.openCell(path, error.cell_index ?? null));
    } else {
      button.disabled = true;
    }
    cell.appendChild(button);
    row.appendChild(cell);
    return row;
  }

  private _message: HTMLElement;
  private _schedules: ScheduleList;
  private _list: HTMLElement;
  private _timer: number | null = null;
  private _expanded = new Set<string>();
  private _seenAny = false;
  private _lastKey = '';
}
