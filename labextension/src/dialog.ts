/**
 * The Productionize dialog: the notebook's DAG, a parameter form typed from the spec, run options
 * pre-filled from settings, and the validation errors (clicking one selects the cell).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, Notification, showErrorMessage } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { renderDag } from './dag';
import { el, formRow } from './dom';
import { postAPI } from './handler';
import { selectCell } from './navigate';
import { formatValue, inputKind, parseValue, sameValue } from './params';

/** The gates typed in a form field: separated by spaces, commas or semicolons (``accuracy>=0.9 loss<0.2``). */
export function gateList(text: string): string[] {
  return text.split(/[\s,;]+/).filter(g => g);
}
import { IIssue, IRunRequest, ISettings, ISpec, location } from './types';

type TextOption = 'ray_address' | 'experiment' | 'tracking_uri' | 'gates' | 'promote';

/** What the form holds, kept when the dialog is reopened after a server-side error. */
export interface IFormValues {
  parameters: Record<string, string | boolean>;
  ray_address: string;
  experiment: string;
  tracking_uri: string;
  no_cache: boolean;
  gates: string;
  promote: string;
}

export interface IBodyOptions {
  path: string;
  settings: ISettings;
  initial?: IFormValues;
  serverError?: string;
  onJump: (cellIndex: number) => void;
  check: (path: string) => Promise<ISpec>;
}

function issueText(issue: IIssue): string {
  const where: string[] = [];
  if (location(issue)) {
    where.push(location(issue));
  }
  if (issue.stage) {
    where.push(`stage '${issue.stage}'`);
  }
  return (where.length ? `${where.join(', ')}: ` : '') + issue.message;
}

/** The dialog body. `getValue()` is the run request, or null while the form is invalid. */
export class ProductionizeBody
  extends Widget
  implements Dialog.IBodyWidget<IRunRequest | null>
{
  constructor(private readonly options: IBodyOptions) {
    super();
    this.addClass('nb2prod-Productionize');
    this._status = el('div', 'nb2prod-Productionize-status', 'Checking the notebook…');
    this.node.appendChild(this._status);
    if (options.serverError) {
      this.node.appendChild(
        el('div', 'nb2prod-Productionize-serverError', options.serverError)
      );
    }
    this.ready = this._load();
  }

  /** Resolves once the spec is loaded and drawn (or its loading failed). */
  readonly ready: Promise<void>;

  get spec(): ISpec | null {
    return this._spec;
  }

  /** True when the notebook is a valid pipeline and every input parses. */
  get valid(): boolean {
    return this._spec !== null && this._spec.errors.length === 0 && this._collect() !== null;
  }

  getValue(): IRunRequest | null {
    if (!this._spec || this._spec.errors.length) {
      return null;
    }
    const parameters = this._collect();
    if (parameters === null) {
      return null;
    }
    const request: IRunRequest = { path: this.options.path, parameters };
    const ray = this._inputs.ray_address?.value.trim();
    const experiment = this._inputs.experiment?.value.trim();
    const tracking = this._inputs.tracking_uri?.value.trim();
    if (ray) {
      request.ray_address = ray;
    }
    if (experiment) {
      request.experiment = experiment;
    }
    if (tracking) {
      request.tracking_uri = tracking;
    }
    if (this._inputs.no_cache?.checked) {
      request.no_cache = true;
    }
    const gates = gateList(this._inputs.gates?.value ?? '');
    if (gates.length) {
      request.gates = gates;
    }
    const promote = this._inputs.promote?.value.trim();
    if (promote) {
      request.promote = promote;
    }
    return request;
  }

  /** The raw form contents, to refill a reopened dialog. */
  values(): IFormValues {
    const parameters: Record<string, string | boolean> = {};
    for (const [name, input] of Object.entries(this._paramInputs)) {
      parameters[name] = input.type === 'checkbox' ? input.checked : input.value;
    }
    return {
      parameters,
      ray_address: this._inputs.ray_address?.value ?? '',
      experiment: this._inputs.experiment?.value ?? '',
      tracking_uri: this._inputs.tracking_uri?.value ?? '',
      no_cache: this._inputs.no_cache?.checked ?? false,
      gates: this._inputs.gates?.value ?? '',
      promote: this._inputs.promote?.value ?? ''
    };
  }

  protected onAfterAttach(): void {
    this._updateAccept();
  }

  private async _load(): Promise<void> {
    try {
      this._spec = await this.options.check(this.options.path);
    } catch (error) {
      this._status.textContent = (error as Error).message;
      this._status.classList.add('nb2prod-mod-error');
      this._updateAccept();
      return;
    }
    this._render(this._spec);
    this._updateAccept();
  }

  private _render(spec: ISpec): void {
    const names = Object.keys(spec.stages);
    this._status.textContent = spec.errors.length
      ? `${PathExt.basename(this.options.path)} is not a valid pipeline yet.`
      : `${names.length} stage${names.length === 1 ? '' : 's'}, ${spec.edges.length} edge${spec.edges.length === 1 ? '' : 's'}` +
        (spec.dialect !== 'nb2prod' ? ` (${spec.dialect} tags)` : '');
    if (spec.errors.length) {
      this.node.appendChild(this._issues('Validation errors', spec.errors, 'error'));
    }
    if (spec.warnings.length) {
      this.node.appendChild(this._issues('Warnings', spec.warnings, 'warning'));
    }
    if (names.length) {
      const box = el('div', 'nb2prod-Productionize-dag');
      const detail: Record<string, string> = {};
      for (const [name, stage] of Object.entries(spec.stages)) {
        detail[name] = `cell${stage.cells.length === 1 ? '' : 's'} ${stage.cells.join(', ')}`;
      }
      box.appendChild(
        renderDag({
          stages: names,
          edges: spec.edges,
          detail,
          onClick: name => {
            const first = spec.stages[name]?.cells[0];
            if (first !== undefined) {
              this.options.onJump(first);
            }
          }
        })
      );
      this.node.appendChild(el('h3', '', 'Pipeline'));
      this.node.appendChild(box);
    }
    if (!spec.errors.length) {
      this.node.appendChild(this._parameterForm(spec));
      this.node.appendChild(this._optionsForm());
    }
  }

  private _issues(title: string, issues: IIssue[], kind: string): HTMLElement {
    const list = el('ul', `nb2prod-Issues nb2prod-mod-${kind}`);
    for (const issue of issues) {
      const item = el('li', 'nb2prod-Issue', issueText(issue));
      if (issue.cell_index !== null && issue.cell_index !== undefined) {
        const index = issue.cell_index;
        item.classList.add('nb2prod-mod-clickable');
        item.tabIndex = 0;
        item.title = `Select cell ${index}`;
        item.addEventListener('click', () => this.options.onJump(index));
        item.addEventListener('keydown', event => {
          if (event.key === 'Enter') {
            this.options.onJump(index);
          }
        });
      }
      list.appendChild(item);
    }
    return el('section', '', undefined, el('h3', '', title), list);
  }

  private _parameterForm(spec: ISpec): HTMLElement {
    const section = el('section', 'nb2prod-Productionize-params');
    section.appendChild(el('h3', '', 'Parameters'));
    const entries = Object.entries(spec.parameters);
    if (!entries.length) {
      section.appendChild(
        el('p', 'nb2prod-Muted', 'No parameters cell (tag a cell "parameters" to add some).')
      );
      return section;
    }
    const grid = el('div', 'nb2prod-Form');
    for (const [name, param] of entries) {
      const kind = inputKind(param.type);
      const input = document.createElement('input');
      input.name = `param-${name}`;
      input.dataset.param = name;
      input.dataset.type = param.type;
      input.className = kind === 'checkbox' ? '' : 'jp-mod-styled';
      const initial = this.options.initial?.parameters[name];
      if (kind === 'checkbox') {
        input.type = 'checkbox';
        input.checked = initial !== undefined ? Boolean(initial) : Boolean(param.default);
      } else {
        input.type = kind === 'integer' || kind === 'number' ? 'number' : 'text';
        if (kind === 'integer') {
          input.step = '1';
        } else if (kind === 'number') {
          input.step = 'any';
        }
        input.value = initial !== undefined ? String(initial) : formatValue(kind, param.default);
      }
      const message = el('span', 'nb2prod-Form-error');
      input.addEventListener('input', () => this._updateAccept());
      input.addEventListener('change', () => this._updateAccept());
      this._paramInputs[name] = input;
      this._paramErrors[name] = message;
      input.id = `nb2prod-param-${name}`;
      formRow(grid, [name, ' ', el('span', 'nb2prod-Type', param.type)], input, message);
    }
    section.appendChild(grid);
    return section;
  }

  private _optionsForm(): HTMLElement {
    const { settings, initial } = this.options;
    const grid = el('div', 'nb2prod-Form');
    const text = (key: TextOption, label: string, value: string, placeholder: string) => {
      const input = document.createElement('input');
      input.type = 'text';
      input.className = 'jp-mod-styled';
      input.name = key;
      input.id = `nb2prod-${key}`;
      input.value = initial ? initial[key] : value;
      input.placeholder = placeholder;
      this._inputs[key] = input;
      formRow(grid, label, input);
    };
    text('ray_address', 'Ray address', settings.rayAddress, 'local cluster (auto)');
    text('experiment', 'Experiment', settings.experiment, 'notebook name');
    text('tracking_uri', 'Tracking URI', settings.trackingUri, 'server default');
    text('gates', 'Gates', '', 'e.g. accuracy>=0.9 (space-separated)');
    text('promote', 'Promote to alias', '', 'e.g. champion (if the gates hold)');
    const noCache = document.createElement('input');
    noCache.type = 'checkbox';
    noCache.name = 'no_cache';
    noCache.id = 'nb2prod-no_cache';
    noCache.checked = initial?.no_cache ?? false;
    this._inputs.no_cache = noCache;
    formRow(grid, 'Ignore cache', noCache);
    return el('section', 'nb2prod-Productionize-options', undefined, el('h3', '', 'Run options'), grid);
  }

  /** Parsed parameters that differ from their defaults, or null when one is invalid. */
  private _collect(): Record<string, unknown> | null {
    if (!this._spec) {
      return null;
    }
    const values: Record<string, unknown> = {};
    let ok = true;
    for (const [name, input] of Object.entries(this._paramInputs)) {
      const param = this._spec.parameters[name];
      const parsed = parseValue(param.type, input.type === 'checkbox' ? input.checked : input.value);
      this._paramErrors[name].textContent = parsed.error ?? '';
      input.classList.toggle('nb2prod-mod-invalid', parsed.error !== undefined);
      input.setAttribute('aria-invalid', parsed.error !== undefined ? 'true' : 'false');
      if (parsed.error !== undefined) {
        ok = false;
      } else if (!sameValue(parsed.value, param.default)) {
        values[name] = parsed.value;
      }
    }
    return ok ? values : null;
  }

  private _updateAccept(): void {
    const button = this.node
      .closest('.jp-Dialog-content')
      ?.querySelector<HTMLButtonElement>('.jp-Dialog-footer .jp-mod-accept');
    if (button) {
      button.disabled = !this.valid;
    }
  }

  private _spec: ISpec | null = null;
  private _status: HTMLElement;
  private _paramInputs: Record<string, HTMLInputElement> = {};
  private _paramErrors: Record<string, HTMLElement> = {};
  private _inputs: Partial<Record<TextOption | 'no_cache', HTMLInputElement>> = {};
}

export interface IProductionizeOptions {
  app: JupyterFrontEnd;
  panel: NotebookPanel;
  settings: () => ISettings;
  check: (path: string) => Promise<ISpec>;
  onStarted: (runId: string) => void;
}

/** Save the notebook (what runs is the file on disk); its server path, or null when saving failed. */
export async function saveNotebook(panel: NotebookPanel): Promise<string | null> {
  await panel.context.ready;
  try {
    await panel.context.save();
  } catch (error) {
    await showErrorMessage('Could not save the notebook', error as Error);
    return null;
  }
  return panel.context.localPath;
}

/** Save the notebook, show the dialog, start the run; reopens with the server's error on a 400. */
export async function productionize(options: IProductionizeOptions): Promise<void> {
  const { app, panel } = options;
  const path = await saveNotebook(panel);
  if (path === null) {
    return;
  }
  let initial: IFormValues | undefined;
  let serverError: string | undefined;
  for (;;) {
    let dialog: Dialog<IRunRequest | null> | null = null;
    const body = new ProductionizeBody({
      path,
      settings: options.settings(),
      initial,
      serverError,
      check: options.check,
      onJump: index => {
        dialog?.reject();
        selectCell(app, panel, index);
      }
    });
    dialog = new Dialog<IRunRequest | null>({
      title: `Productionize ${PathExt.basename(path)}`,
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run', className: 'nb2prod-RunButton' })],
      focusNodeSelector: '.nb2prod-Productionize input',
      hasClose: true
    });
    dialog.addClass('nb2prod-ProductionizeDialog');
    const result = await dialog.launch();
    if (!result.button.accept) {
      return;
    }
    initial = body.values();
    const request = result.value;
    if (!request) {
      serverError = 'Fix the highlighted fields first.';
      continue;
    }
    try {
      const { id } = await postAPI<{ id: string }>('runs', request);
      Notification.success(`Run ${id} started`, { autoClose: 4000 });
      options.onStarted(id);
      return;
    } catch (error) {
      serverError = (error as Error).message;
    }
  }
}
