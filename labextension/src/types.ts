/**
 * The JSON shapes of nb2prod's REST API (see ARCHITECTURE.md, "The Python API").
 */

/** A validation error or warning pinned to a cell where one is known. */
export interface IIssue {
  message: string;
  cell_index: number | null;
  cell_id: string | null;
  stage: string | null;
}

export interface IParameter {
  type: string; // int | float | bool | str | None | list | dict | any
  default: unknown;
}

export interface IStageSpec {
  cells: number[];
  inputs: string[];
  outputs: string[];
  upstream: string[];
  resources: Record<string, number>;
  retries: number;
  timeout: number | null;
}

/** What `POST /nb2prod/check` returns: `nb2prod check --json`. */
export interface ISpec {
  notebook: string;
  dialect: string;
  parameters: Record<string, IParameter>;
  stages: Record<string, IStageSpec>;
  edges: [string, string][];
  warnings: IIssue[];
  errors: IIssue[];
}

/** "cell 4, line 2": where an issue or error is, worded as nb2prod.contracts.location does ('' when unknown). */
export function location(where: { cell_index: number | null; line?: number | null }): string {
  if (where.cell_index === null || where.cell_index === undefined) {
    return '';
  }
  return `cell ${where.cell_index}${where.line ? `, line ${where.line}` : ''}`;
}

export interface IStageError {
  type: string;
  message: string;
  cell_index: number | null;
  line: number | null;
  traceback?: string | null;
}

export type StageStatus =
  | 'pending'
  | 'running'
  | 'done'
  | 'failed'
  | 'cached'
  | 'skipped'
  | 'cancelled';

export type RunStatus =
  | 'running'
  | 'done'
  | 'failed'
  | 'cancelled'
  | 'interrupted';

export interface IStageRecord {
  status: StageStatus;
  started_at: string | null;
  ended_at: string | null;
  duration_s: number | null;
  attempts: number;
  system_retries: number;
  cached: boolean;
  error: IStageError | null;
}

/** Whether the run's gates held (`gate:` tags and `--gate`). */
export interface IGateOutcome {
  status: 'passed' | 'failed' | 'none';
  reason: string | null;
}

/** What `--promote ALIAS` did with the run's new model version. */
export interface IPromotion {
  alias: string;
  model: string | null;
  version: number | null;
  moved: boolean;
  reason: string;
}

/** The `monitor:` variables compared with the reference run's profiles. */
export interface IDrift {
  drifted: boolean;
  reference: string | null;
  threshold: number;
  columns: Record<string, string[]>;
  max_psi: Record<string, number>;
  reason: string;
}

/** A run record, as `GET /nb2prod/runs/{id}` returns it. */
export interface IRunRecord {
  id: string;
  notebook: string;
  /** The notebook's path relative to the server root (null when outside it). */
  path: string | null;
  status: RunStatus;
  origin: string;
  created_at: string | null;
  started_at: string | null;
  ended_at: string | null;
  duration_s: number | null;
  parameters: Record<string, unknown>;
  mlflow_run_id: string | null;
  mlflow_experiment_id: string | null;
  mlflow_url: string | null;
  error: { type?: string; message?: string; stage?: string } | null;
  stages: Record<string, IStageRecord>;
  gate: IGateOutcome;
  promotion: IPromotion | null;
  drift: IDrift | null;
}

/**
 * The body of `POST /nb2prod/runs`: a path plus any RunOptions fields. Mirrors RunOptions in
 * nb2prod/contracts/options.py field for field (tests/test_contracts.py checks it).
 */
export interface IRunRequest {
  path: string;
  parameters: Record<string, unknown>;
  ray_address?: string | null;
  tracking_uri?: string | null;
  experiment?: string | null;
  output_notebook?: string | null;
  log_output?: boolean;
  no_cache?: boolean;
  force?: string[];
  stages?: string[];
  downstream?: boolean;
  resume_from?: string | null;
  gpu_fallback?: 'fail' | 'cpu';
  secrets?: string[];
  env?: string[];
  cache_dir?: string | null;
  pip?: string[];
  requirements?: string | null;
  gates?: string[];
  promote?: string | null;
  drift_reference?: string | null;
  drift_threshold?: number;
  fail_on_drift?: boolean;
}

/** The extension's settings (schema/plugin.json). */
export interface ISettings {
  rayAddress: string;
  trackingUri: string;
  experiment: string;
  mlflowUiUrl: string;
  pollInterval: number;
}

export const DEFAULT_SETTINGS: ISettings = {
  rayAddress: '',
  trackingUri: '',
  experiment: '',
  mlflowUiUrl: '',
  pollInterval: 1000
};

/** What `GET /nb2prod/schedule-preview` returns. */
export interface ISchedulePreview {
  cron: string;
  timezone: string;
  description: string;
  next_fire_times: string[];
  next_fire_times_local: string[];
}

/** One fire of a schedule (its history is the audit log). */
export interface IFire {
  scheduled_time: string;
  status: string; // queued | running | done | failed | skipped | cancelled
  reason: string | null;
  attempts: number;
  run_id: string | null;
  mlflow_run_id: string | null;
  error: string | null;
}

/** A schedule, as `GET /nb2prod/schedules` lists it (with its latest fire only). */
export interface ISchedule {
  name: string;
  notebook: string;
  cron: string;
  description: string;
  timezone: string;
  mode: 'pipeline' | 'notebook';
  parameters: Record<string, unknown>;
  catchup: string;
  max_concurrent: number;
  timeout_s: number | null;
  retries: number;
  paused: boolean;
  next_fire_times: string[];
  next_fire_times_local: string[];
  last_status: string | null;
  fires: IFire[];
}

/** The body of `POST /nb2prod/schedules`. */
export interface IScheduleRequest {
  name: string;
  path: string;
  cron: string;
  tz: string;
  mode: 'pipeline' | 'notebook';
  parameters: Record<string, string>;
  options: Record<string, unknown>;
  catchup: string;
  max_concurrent: number;
  retries: number;
  timeout_s: number | null;
  notify_url: string | null;
  notify_on_success: boolean;
}

/** What `GET /nb2prod/schedulers` returns: the live schedulers and a warning when none runs. */
export interface ISchedulers {
  schedulers: { id: string; started_at: string; seen_at: string }[];
  warning: string | null;
}
