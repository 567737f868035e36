/**
 * The Schedules section of the Pipelines panel: every schedule in the store with its cron in words, next
 * fire time and last status; pause / resume, run now, remove; a click shows its recent fires (the audit
 * log), whose runs open in the panel. Drawn from `GET /nb2prod/schedules` (+ `/schedules/{name}`).
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';

import { el } from './dom';
import { postAPI, requestAPI } from './handler';
import { formatFireTime } from './schedule';
import { IFire, ISchedule, ISchedulers } from './types';

const HISTORY = 10;

export interface IScheduleListOptions {
  /** Called after an action changed something (e.g. run now started a run). */
  changed: () => void;
  /** Show a run (a fire's) in the panel. */
  selectRun: (runId: string) => void;
}

export class ScheduleList {
  /** The section's root node, for the panel to place. */
  readonly node: HTMLElement;

  constructor(private readonly options: IScheduleListOptions) {
    this._count = el('span', 'nb2prod-Muted');
    this._warning = el('div', 'nb2prod-Schedules-warning');
    this._list = el('div', 'nb2prod-Schedules-list');
    this.node = el(
      'section',
      'nb2prod-Schedules',
      undefined,
      el('h3', '', 'Schedules ', this._count),
      this._warning,
      this._list
    );
  }

  /** Fetch the schedules and redraw when they changed. */
  async refresh(): Promise<void> {
    const asked = ++this._asked;
    let schedules: ISchedule[] = [];
    let warning: string | null = null;
    let error = '';
    try {
      const [listed, live] = await Promise.all([
        requestAPI<ISchedule[]>('schedules'),
        requestAPI<ISchedulers>('schedulers')
      ]);
      warning = live.warning;
      schedules = await Promise.all(
        listed.map(s =>
          this._expanded.has(s.name)
            ? requestAPI<ISchedule>(`schedules/${encodeURIComponent(s.name)}?history=${HISTORY}`).catch(() => s)
            : s
        )
      );
    } catch (reason) {
      error = `Cannot list schedules: ${(reason as Error).message}`;
    }
    if (asked !== this._asked) {
      return; // a newer refresh (after an action or a click) is drawing
    }
    // Schedules that nothing fires are the surprise to avoid: say so while there are schedules.
    this._warning.textContent = error || (schedules.length && warning ? warning : '');
    const key = JSON.stringify([
      [...this._expanded],
      schedules.map(s => [s.name, s.paused, s.next_fire_times[0], s.fires])
    ]);
    if (key === this._lastKey) {
      return;
    }
    this._lastKey = key;
    this._count.textContent = schedules.length ? `(${schedules.length})` : '';
    this._list.replaceChildren(
      ...(schedules.length
        ? schedules.map(s => this._row(s))
        : [el('div', 'nb2prod-Muted', 'No schedules. Use "Schedule…" on a notebook to add one.')])
    );
  }

  private _row(schedule: ISchedule): HTMLElement {
    const node = el('div', 'nb2prod-Schedule-row');
    node.dataset.name = schedule.name;
    node.dataset.paused = String(schedule.paused);
    node.dataset.lastStatus = schedule.last_status ?? '';
    const last = schedule.fires[0];
    const badge = schedule.paused
      ? el('span', 'nb2prod-Status nb2prod-mod-skipped', 'paused')
      : last
        ? el('span', `nb2prod-Status nb2prod-mod-${last.status}`, last.status)
        : el('span', 'nb2prod-Muted', 'not fired yet');
    const expanded = this._expanded.has(schedule.name);
    const head = el(
      'div',
      'nb2prod-Schedule-head',
      undefined,
      el('span', 'nb2prod-Run-caret', expanded ? '▾' : '▸'),
      el('span', 'nb2prod-Schedule-name', schedule.name),
      badge
    );
    head.tabIndex = 0;
    head.setAttribute('role', 'button');
    head.setAttribute('aria-expanded', String(expanded));
    const toggle = () => {
      if (!this._expanded.delete(schedule.name)) {
        this._expanded.add(schedule.name);
      }
      this.options.changed();
    };
    head.addEventListener('click', toggle);
    head.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        toggle();
      }
    });
    head.title = [
      `${schedule.cron} (${schedule.timezone}) · ${schedule.mode} · ${PathExt.basename(schedule.notebook)}`,
      last ? `last fire ${last.scheduled_time}: ${last.reason ?? last.error ?? last.status}` : 'never fired'
    ].join('\n');
    const next = schedule.next_fire_times_local[0];
    const when = el(
      'div',
      'nb2prod-Schedule-when',
      `${schedule.description} (${schedule.timezone})` +
        (next && !schedule.paused ? ` · next ${formatFireTime(next, schedule.timezone)}` : '')
    );
    const actions = el('div', 'nb2prod-Schedule-actions');
    const button = (label: string, action: () => Promise<unknown>, className = '') => {
      const b = el('button', `jp-Button jp-mod-minimal jp-mod-small ${className} nb2prod-Schedule-action`, label);
      b.dataset.action = label.toLowerCase().replace(/\s+/g, '-');
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          await action();
        } catch (error) {
          Notification.error(`${schedule.name}: ${(error as Error).message}`, { autoClose: 8000 });
        }
        this._lastKey = '';
        this.options.changed();
      });
      actions.appendChild(b);
    };
    const path = `schedules/${encodeURIComponent(schedule.name)}`;
    button(schedule.paused ? 'Resume' : 'Pause', () => postAPI(`${path}/${schedule.paused ? 'resume' : 'pause'}`, {}));
    button('Run now', () => postAPI(`${path}/run-now`, {}));
    button('Remove', async () => {
      const answer = await showDialog({
        title: `Remove schedule ${schedule.name}?`,
        body: 'It stops firing and its history is deleted. Runs it started stay in the run store and in MLflow.',
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })]
      });
      if (answer.button.accept) {
        await requestAPI(path, { method: 'DELETE' });
      }
    }, 'jp-mod-warn');
    node.append(head, when, actions);
    if (expanded) {
      node.appendChild(this._history(schedule));
    }
    return node;
  }

  private _history(schedule: ISchedule): HTMLElement {
    if (!schedule.fires.length) {
      return el('div', 'nb2prod-Muted', 'No fires yet.');
    }
    const table = el('table', 'nb2prod-Stages nb2prod-Fires');
    const headRow = el('tr');
    for (const title of ['fire time', 'status', 'tries']) {
      headRow.appendChild(el('th', '', title));
    }
    table.appendChild(headRow);
    for (const fire of schedule.fires.slice(0, HISTORY)) {
      table.appendChild(this._fireRow(schedule, fire));
    }
    return table;
  }

  private _fireRow(schedule: ISchedule, fire: IFire): HTMLElement {
    const row = el('tr', 'nb2prod-Fire');
    row.dataset.status = fire.status;
    row.dataset.runId = fire.run_id ?? '';
    const note = fire.reason ?? fire.error ?? '';
    row.append(
      el('td', '', formatFireTime(fire.scheduled_time, schedule.timezone, true)),
      el('td', '', undefined, el('span', `nb2prod-Status nb2prod-mod-${fire.status}`, fire.status)),
      el('td', 'nb2prod-Stage-attempts', fire.attempts ? String(fire.attempts) : '')
    );
    row.title = note;
    const runId = fire.run_id;
    if (runId) {
      row.classList.add('nb2prod-mod-clickable');
      row.title = `${note ? `${note}\n` : ''}Show run ${runId}`;
      row.addEventListener('click', () => this.options.selectRun(runId));
    }
    return row;
  }

  private _count: HTMLElement;
  private _warning: HTMLElement;
  private _list: HTMLElement;
  private _expanded = new Set<string>();
  private _lastKey = '';
  private _asked = 0;
}
