/**
 * The Schedule… dialog: a cron expression and timezone with a live preview (the expression in words and its
 * next fire times, from the server), parameters (templates such as `{{ scheduled_time - 1d:%Y-%m-%d }}`
 * allowed), mode and policies. Everything is validated by the server; a refused schedule reopens the
 * dialog with its reason and the form as it was.
 */
import { Dialog, Notification, showErrorMessage } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { gateList, saveNotebook } from './dialog';
import { el, formRow } from './dom';
import { postAPI, requestAPI } from './handler';
import { formatValue, inputKind } from './params';
import { ISchedule, IScheduleRequest, ISchedulePreview, ISettings, ISpec } from './types';

/** Names the REST routes accept (`/nb2prod/schedules/{name}`). */
export const SCHEDULE_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
const PREVIEW_DELAY_MS = 250;

/** A fire time (ISO, with offset) as the schedule's timezone shows it: "Tue, Dec 1, 2026, 02:30", or
 * "Dec 1, 02:30" when `short`. */
export function formatFireTime(iso: string, timeZone: string, short = false): string {
  try {
    return new Date(iso).toLocaleString(undefined, {
      timeZone,
      weekday: short ? undefined : 'short',
      month: 'short',
      day: 'numeric',
      year: short ? undefined : 'numeric',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23'
    });
  } catch {
    return iso;
  }
}

/** The timezone this browser runs in (the default for a new schedule). */
function browserZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

function zones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (key: string) => string[] };
  return intl.supportedValuesOf ? ['UTC', ...intl.supportedValuesOf('timeZone')] : ['UTC'];
}

export interface IScheduleBodyOptions {
  path: string;
  spec: ISpec;
  settings: ISettings;
  initial?: IScheduleRequest;
  serverError?: string;
}

/** The dialog body; `getValue()` is the schedule request, or null while the form is invalid. */
export class ScheduleBody extends Widget implements Dialog.IBodyWidget<IScheduleRequest | null> {
  constructor(private readonly options: IScheduleBodyOptions) {
    super();
    this.addClass('nb2prod-Schedule');
    const { initial, spec, path } = options;
    if (options.serverError) {
      this.node.appendChild(el('div', 'nb2prod-Productionize-serverError', options.serverError));
    }
    const grid = el('div', 'nb2prod-Form');
    const defaultName = PathExt.basename(path, '.ipynb').replace(/[^A-Za-z0-9_.-]+/g, '-');
    this._name = this._input('name', initial?.name ?? defaultName);
    this._nameError = el('span', 'nb2prod-Form-error');
    formRow(grid, 'Name', this._name, this._nameError);
    this._cron = this._input('cron', initial?.cron ?? '0 2 * * *', 'm h dom mon dow, or @daily');
    formRow(grid, 'Cron', this._cron);
    this._tz = this._input('tz', initial?.tz ?? browserZone(), 'IANA name, e.g. Europe/Paris');
    const list = el('datalist');
    list.id = 'nb2prod-schedule-zones';
    list.append(...zones().map(zone => Object.assign(el('option'), { value: zone })));
    this._tz.setAttribute('list', list.id);
    formRow(grid, 'Timezone', this._tz, list);
    this._preview = el('div', 'nb2prod-Schedule-preview', 'Checking the expression…');
    grid.append(el('span'), this._preview);
    this._mode = this._select('mode', ['pipeline', 'notebook'], initial?.mode ?? 'pipeline');
    formRow(grid, 'Mode', this._mode);
    this.node.append(el('h3', '', 'When'), grid);

    const params = Object.entries(spec.parameters);
    const paramGrid = el('div', 'nb2prod-Form');
    for (const [name, param] of params) {
      const input = this._input(`param-${name}`, initial?.parameters[name] ?? '', formatValue(inputKind(param.type), param.default));
      input.dataset.param = name;
      formRow(paramGrid, [name, ' ', el('span', 'nb2prod-Type', param.type)], input);
      this._params[name] = input;
    }
    this.node.append(
      el('h3', '', 'Parameters'),
      params.length
        ? el('p', 'nb2prod-Muted', 'Empty keeps the default. Values are read like -p on the command line; ' +
            '{{ scheduled_time - 1d:%Y-%m-%d }} is replaced by the fire time.')
        : el('p', 'nb2prod-Muted', 'No parameters cell.'),
      paramGrid
    );

    const policy = el('div', 'nb2prod-Form');
    this._catchup = this._select('catchup', ['skip', 'latest', 'all'], initial?.catchup ?? 'skip');
    formRow(policy, 'Missed fire times', this._catchup);
    this._retries = this._number('retries', initial?.retries ?? 0, 0);
    formRow(policy, 'Retries', this._retries);
    this._timeout = this._number('timeout_s', initial?.timeout_s ?? null, 1);
    this._timeout.placeholder = 'no limit';
    formRow(policy, 'Timeout (s)', this._timeout);
    this._maxConcurrent = this._number('max_concurrent', initial?.max_concurrent ?? 1, 1);
    formRow(policy, 'Max concurrent runs', this._maxConcurrent);
    this._notifyUrl = this._input('notify_url', initial?.notify_url ?? '', 'webhook called on failure (optional)');
    formRow(policy, 'Notify URL', this._notifyUrl);
    this._experiment = this._input('experiment', String(initial?.options.experiment ?? options.settings.experiment), 'notebook name');
    formRow(policy, 'Experiment', this._experiment);
    const gates = (initial?.options.gates as string[] | undefined) ?? [];
    this._gates = this._input('gates', gates.join(' '), 'e.g. accuracy>=0.9 (space-separated)');
    formRow(policy, 'Gates', this._gates);
    this._promote = this._input('promote', String(initial?.options.promote ?? ''), 'e.g. champion (if the gates hold)');
    formRow(policy, 'Promote to alias', this._promote);
    this.node.append(el('h3', '', 'Policies'), policy);

    for (const input of [this._name, this._retries, this._timeout, this._maxConcurrent, this._mode]) {
      input.addEventListener('input', () => this._updateAccept());
    }
    for (const input of [this._cron, this._tz]) {
      input.addEventListener('input', () => this._schedulePreview());
    }
    this._schedulePreview(0);
  }

  /** The preview as last answered by the server (null while checking or when invalid). */
  get preview(): ISchedulePreview | null {
    return this._previewData;
  }

  getValue(): IScheduleRequest | null {
    const request = this.draft();
    const { retries, max_concurrent: maxConcurrent, timeout_s: timeout } = request;
    const numbersOk =
      Number.isInteger(retries) && retries >= 0 && Number.isInteger(maxConcurrent) && maxConcurrent >= 1 &&
      (timeout === null || (Number.isFinite(timeout) && timeout > 0));
    // While the preview loads the server has the last word; a preview that failed is a known error.
    return SCHEDULE_NAME.test(request.name) && numbersOk && this.runnable && this._previewError === null
      ? request
      : null;
  }

  /** Pipeline mode needs a valid pipeline; notebook mode runs any notebook. */
  get runnable(): boolean {
    return this._mode.value === 'notebook' || this.options.spec.errors.length === 0;
  }

  /** The form as it stands, valid or not (to refill a reopened dialog). */
  draft(): IScheduleRequest {
    const parameters: Record<string, string> = {};
    for (const [key, input] of Object.entries(this._params)) {
      if (input.value !== '') {
        parameters[key] = input.value;
      }
    }
    const options: Record<string, unknown> = {};
    const { rayAddress, trackingUri } = this.options.settings;
    if (this._experiment.value.trim()) {
      options.experiment = this._experiment.value.trim();
    }
    const gates = gateList(this._gates.value);
    if (gates.length) {
      options.gates = gates;
    }
    if (this._promote.value.trim()) {
      options.promote = this._promote.value.trim();
    }
    if (rayAddress) {
      options.ray_address = rayAddress;
    }
    if (trackingUri) {
      options.tracking_uri = trackingUri;
    }
    return {
      name: this._name.value.trim(),
      path: this.options.path,
      cron: this._cron.value.trim(),
      tz: this._tz.value.trim(),
      mode: this._mode.value as IScheduleRequest['mode'],
      parameters,
      options,
      catchup: this._catchup.value,
      max_concurrent: Number(this._maxConcurrent.value),
      retries: Number(this._retries.value),
      timeout_s: this._timeout.value.trim() === '' ? null : Number(this._timeout.value),
      notify_url: this._notifyUrl.value.trim() || null,
      notify_on_success: false
    };
  }

  protected onAfterAttach(): void {
    this._updateAccept();
  }

  protected onBeforeDetach(): void {
    window.clearTimeout(this._timer);
  }

  private _input(key: string, value: string, placeholder = ''): HTMLInputElement {
    const input = el('input', 'jp-mod-styled');
    input.type = 'text';
    input.name = key;
    input.id = `nb2prod-schedule-${key}`;
    input.value = value;
    input.placeholder = placeholder;
    return input;
  }

  private _number(key: string, value: number | null, min: number): HTMLInputElement {
    const input = this._input(key, value === null ? '' : String(value));
    input.type = 'number';
    input.min = String(min);
    input.step = '1';
    return input;
  }

  private _select(key: string, choices: string[], value: string): HTMLSelectElement {
    const select = el('select', 'jp-mod-styled');
    select.name = key;
    select.id = `nb2prod-schedule-${key}`;
    select.append(...choices.map(choice => Object.assign(el('option', '', choice), { value: choice })));
    select.value = value;
    return select;
  }

  private _schedulePreview(delay = PREVIEW_DELAY_MS): void {
    window.clearTimeout(this._timer);
    this._previewData = null;
    this._previewError = null;
    this._updateAccept();
    this._timer = window.setTimeout(() => void this._loadPreview(), delay);
  }

  private async _loadPreview(): Promise<void> {
    const cron = this._cron.value.trim();
    const tz = this._tz.value.trim();
    const query = new URLSearchParams({ cron, tz, count: '5' });
    const asked = ++this._asked;
    let preview: ISchedulePreview | null = null;
    let error = '';
    try {
      preview = await requestAPI<ISchedulePreview>(`schedule-preview?${query}`);
    } catch (reason) {
      error = (reason as Error).message;
    }
    if (asked !== this._asked || this.isDisposed) {
      return; // a newer keystroke asked again
    }
    this._previewData = preview;
    this._previewError = preview === null ? error : null;
    this._preview.classList.toggle('nb2prod-mod-error', preview === null);
    if (preview === null) {
      this._preview.replaceChildren(el('span', '', error));
    } else {
      const times = el('ol', 'nb2prod-Schedule-times');
      times.append(...preview.next_fire_times_local.map(t => el('li', '', formatFireTime(t, preview!.timezone))));
      this._preview.replaceChildren(
        el('div', 'nb2prod-Schedule-description', `${preview.description} (${preview.timezone})`),
        el('div', 'nb2prod-Muted', 'Next fire times:'),
        times
      );
    }
    this._updateAccept();
  }

  private _updateAccept(): void {
    const name = this._name.value.trim();
    this._nameError.textContent = SCHEDULE_NAME.test(name) ? '' : 'letters, digits, ".", "_" and "-" only';
    this._name.classList.toggle('nb2prod-mod-invalid', !SCHEDULE_NAME.test(name));
    const button = this.node
      .closest('.jp-Dialog-content')
      ?.querySelector<HTMLButtonElement>('.jp-Dialog-footer .jp-mod-accept');
    if (button) {
      button.disabled = this.getValue() === null || this._previewData === null;
    }
  }

  private _name: HTMLInputElement;
  private _nameError: HTMLElement;
  private _cron: HTMLInputElement;
  private _tz: HTMLInputElement;
  private _mode: HTMLSelectElement;
  private _preview: HTMLElement;
  private _params: Record<string, HTMLInputElement> = {};
  private _catchup: HTMLSelectElement;
  private _retries: HTMLInputElement;
  private _timeout: HTMLInputElement;
  private _maxConcurrent: HTMLInputElement;
  private _notifyUrl: HTMLInputElement;
  private _experiment: HTMLInputElement;
  private _gates: HTMLInputElement;
  private _promote: HTMLInputElement;
  private _previewData: ISchedulePreview | null = null;
  private _previewError: string | null = null;
  private _timer = 0;
  private _asked = 0;
}

export interface IScheduleOptions {
  panel: NotebookPanel;
  settings: () => ISettings;
  check: (path: string) => Promise<ISpec>;
  onAdded: (schedule: ISchedule) => void;
}

/** Save the notebook, show the dialog, add the schedule; reopens with the server's reason when refused. */
export async function scheduleNotebook(options: IScheduleOptions): Promise<void> {
  const path = await saveNotebook(options.panel);
  if (path === null) {
    return;
  }
  let spec: ISpec;
  try {
    spec = await options.check(path);
  } catch (error) {
    await showErrorMessage('Cannot read the notebook', error as Error);
    return;
  }
  let initial: IScheduleRequest | undefined;
  let serverError = spec.errors.length
    ? `${PathExt.basename(path)} is not a valid pipeline (${spec.errors.length} error` +
      `${spec.errors.length === 1 ? '' : 's'}; Productionize shows them): only notebook mode can run it.`
    : undefined;
  for (;;) {
    const body = new ScheduleBody({ path, spec, settings: options.settings(), initial, serverError });
    const dialog = new Dialog<IScheduleRequest | null>({
      title: `Schedule ${PathExt.basename(path)}`,
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Schedule', className: 'nb2prod-ScheduleButton' })],
      focusNodeSelector: '.nb2prod-Schedule input[name="cron"]',
      hasClose: true
    });
    dialog.addClass('nb2prod-ProductionizeDialog');
    const result = await dialog.launch();
    if (!result.button.accept) {
      return;
    }
    initial = body.draft();
    if (!result.value) {
      serverError = body.runnable
        ? 'Fix the schedule first: its name, cron expression, timezone or numbers are not valid.'
        : serverError;
      continue;
    }
    try {
      const schedule = await postAPI<ISchedule>('schedules', result.value);
      Notification.success(
        `Scheduled ${schedule.name}: ${schedule.description} (${schedule.timezone}); next ` +
          formatFireTime(schedule.next_fire_times_local[0], schedule.timezone),
        { autoClose: 6000 }
      );
      options.onAdded(schedule);
      return;
    } catch (error) {
      serverError = (error as Error).message;
    }
  }
}
