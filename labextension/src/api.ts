/** The shapes of the server API's answers (docs/jupyterlab.md, "The server API"). */

export interface VersionInfo {
  version: string;
  api: number;
  store: string;
  schema: string;
  root_dir: string;
}

export interface RunRow {
  run_id: string;
  name: string;
  experiment: string;
  status: string;
  start_time: number;
  end_time: number | null;
  parent_run_id: string | null;
  notebook: string | null;
  linearity: string | null;
  /** The verdict of each family of the run's newest checks: `{drift: 'FAIL (3 of 12)'}`. */
  checks?: Record<string, string>;
  params: Record<string, string>;
  metrics: Record<string, number | string>;
  tags: Record<string, string>;
}

export interface RunsPage {
  runs: RunRow[];
  next_cursor: string | null;
  total: number;
}

export interface MetricValue {
  value: number | string;
  step: number;
  timestamp: number;
}

export interface Dataset {
  name: string;
  role: string;
  hash: string;
  kind: string;
  rows: number | null;
  columns: number | null;
  schema: unknown;
  profile: unknown;
}

export interface Check {
  kind: string;
  name: string;
  passed: boolean | null;
  value: unknown;
  threshold: unknown;
  message: string | null;
}

export interface Artifact {
  name: string;
  size: number;
  digest: string;
  url: string;
}

export interface RunDetail {
  run: RunRow & { user?: string; host?: string; source?: string; duration?: number | null };
  params: Record<string, string>;
  metrics: Record<string, MetricValue>;
  tags: Record<string, string>;
  datasets: Dataset[];
  environment: Record<string, unknown> | null;
  git: Record<string, unknown> | null;
  checks: Check[];
  artifacts: Artifact[];
  lineage: { verdict: string | null; out_of_order_cells: unknown[]; detail: unknown } | null;
  output_notebook: string | null;
}

export interface MetricSeries {
  key: string;
  points: [number, number | string, number][];
  count: number;
}

export interface CompareRow {
  key: string;
  values: Record<string, unknown>;
  delta?: Record<string, unknown>;
  best?: string | null;
  same: boolean;
}

export interface CompareResult {
  runs: { run_id: string; name: string }[];
  baseline: string;
  sections: Record<string, CompareRow[]>;
  varying_params: string[];
  hidden?: number;
}

export interface NotebookParameter {
  name: string;
  type: string;
  default: unknown;
  help: string;
}

export interface NotebookParams {
  path: string;
  parameters: NotebookParameter[];
  has_parameters_cell: boolean;
}

export interface Job {
  job_id: string;
  path: string;
  status: string;
  run_id: string | null;
  cells_done: number;
  cells_total: number;
  current_cell: number | null;
  error: string | null;
  output_path: string | null;
  exit_code?: number | null;
}
