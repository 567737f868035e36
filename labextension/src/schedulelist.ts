/**
 * The Schedules section of the Pipelines panel: every schedule in the store with its cron in words, next
 * fire time and last status; pause / resume, run now, remove. Drawn from `GET /nb2prod/schedules`.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';

import { el } from './dom';
import { postAPI, requestAPI } from './handler';
import { formatFireTime } from './schedule';
import { ISchedule } from './types';

export interface IScheduleListOptions {
  /** Called after an action changed something (e.g. run now started a run). */
  changed: () => void;
}

export class ScheduleList {
  /** The section's root node, for the panel to place. */
  readonly node: HTMLElement;

  constructor(private readonly options: IScheduleListOptions) {
    this._count = el('span', 'nb2prod-Muted');
    this._list = el('div', 'nb2prod-Schedules-list');
    this.node = el('section', 'nb2prod-Schedules', undefined, el('h3', '', 'Schedules ', this._count), this._list);
  }

  /** Fetch the schedules and redraw when they changed. */
  async refresh(): Promise<void> {
    const schedules = await requestAPI<ISchedule[]>('schedules');
    const key = JSON.stringify(schedules.map(s => [s.name, s.paused, s.next_fire_times[0], s.fires[0]]));
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
    const head = el('div', 'nb2prod-Schedule-head', undefined, el('span', 'nb2prod-Schedule-name', schedule.name), badge);
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
    return node;
  }

  private _count: HTMLElement;
  private _list: HTMLElement;
  private _lastKey = '';
}
