/**
 * Run details (a main-area tab): params, metrics with charts, data (schema, profile),
 * environment, git, checks, artifacts, the output notebook and the lineage verdict with
 * the out-of-order cells named. Refreshes while the run is running.
 */
import { Widget } from '@lumino/widgets';

import { MetricSeries, RunDetail } from './api';
import { Point, lineChart } from './charts';
import { flatten, fmt, fmtDuration, fmtTime, h, kvTable, linearityBadge, replace, statusBadge } from './dom';
import { apiUrl, num, requestAPI } from './request';

export interface DetailsHost {
  /** Open a run's executed notebook (an artifact name) in JupyterLab. */
  openOutput(runId: string, name: string): void;
}

const MAX_CHARTS = 12;

function section(name: string, title: string, ...content: (Node | string | null)[]): HTMLElement {
  const el = h('section', { class: `mlnb-section mlnb-section-${name}` }, h('h3', {}, title));
  for (const c of content) {
    if (c !== null) {
      el.appendChild(typeof c === 'string' ? h('p', { class: 'mlnb-muted' }, c) : c);
    }
  }
  return el;
}

function pretty(value: unknown): HTMLElement {
  return h('pre', { class: 'mlnb-pre' }, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

export class RunDetails extends Widget {
  private timer = 0;
  private charts = new Map<string, HTMLElement>();

  constructor(
    readonly runId: string,
    private host: DetailsHost
  ) {
    super();
    this.addClass('mlnb-run-details');
    this.id = `mlnb-run-${runId}`;
    this.title.label = `Run ${runId.slice(0, 8)}`;
    this.title.closable = true;
    this.node.appendChild(h('p', { class: 'mlnb-muted' }, 'Loading…'));
    void this.load();
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  async load(): Promise<void> {
    let detail: RunDetail;
    try {
      detail = await requestAPI<RunDetail>(`runs/${encodeURIComponent(this.runId)}`);
    } catch (error) {
      replace(this.node, h('pre', { class: 'mlnb-error' }, (error as Error).message));
      return;
    }
    if (this.isDisposed) {
      return;
    }
    const scroll = this.node.scrollTop;
    this.render(detail);
    this.node.scrollTop = scroll;
    await this.loadCharts(detail);
    if (detail.run.status === 'running' && !this.isDisposed) {
      this.timer = window.setTimeout(() => void this.load(), 3000);
    }
  }

  private render(d: RunDetail): void {
    const run = d.run;
    this.title.label = `${run.name || run.run_id.slice(0, 8)} (run)`;
    this.title.caption = `${run.name} · ${run.run_id}`;
    const header = h(
      'header',
      { class: 'mlnb-details-header' },
      h('h2', { class: 'mlnb-details-name' }, run.name || run.run_id),
      statusBadge(run.status),
      linearityBadge(run.linearity),
      h(
        'div',
        { class: 'mlnb-muted mlnb-details-meta' },
        [
          run.run_id,
          run.experiment && `experiment ${run.experiment}`,
          fmtTime(run.start_time),
          run.duration !== undefined && run.duration !== null && fmtDuration(run.duration),
          run.user && `${run.user}@${run.host || ''}`,
          run.notebook
        ]
          .filter(Boolean)
          .join(' · ')
      )
    );
    const parts: HTMLElement[] = [header];

    if (d.output_notebook) {
      const open = h('button', { class: 'jp-mod-styled mlnb-open-output' }, 'Open the output notebook');
      const name = d.output_notebook;
      open.addEventListener('click', () => this.host.openOutput(run.run_id, name));
      parts.push(h('div', { class: 'mlnb-actions' }, open, h('span', { class: 'mlnb-muted' }, name)));
    }

    parts.push(
      section(
        'lineage',
        'Lineage',
        this.lineage(d)
      )
    );
    const params = Object.entries(d.params).sort();
    parts.push(section('params', `Params (${params.length})`, params.length ? kvTable(params) : 'No params.'));

    const metricKeys = Object.keys(d.metrics).sort();
    const metricTable = kvTable(
      metricKeys.map(k => [k, `${fmt(num(d.metrics[k].value) ?? d.metrics[k].value)}  (step ${d.metrics[k].step})`])
    );
    const charts = h('div', { class: 'mlnb-charts' });
    for (const key of metricKeys.slice(0, MAX_CHARTS)) {
      const slot = this.charts.get(key) || h('div', { class: 'mlnb-chart-slot' });
      this.charts.set(key, slot);
      charts.appendChild(slot);
    }
    parts.push(
      section('metrics', `Metrics (${metricKeys.length})`, metricKeys.length ? metricTable : 'No metrics.', metricKeys.length ? charts : null)
    );

    const data = section('data', `Data (${d.datasets.length})`, d.datasets.length ? null : 'No datasets.');
    for (const ds of d.datasets) {
      data.appendChild(
        h(
          'details',
          { class: 'mlnb-dataset' },
          h(
            'summary',
            {},
            `${ds.name} · ${ds.role} · ${ds.kind || ''} · ${ds.rows ?? '?'} rows × ${ds.columns ?? '?'} columns · ${String(ds.hash || '').slice(0, 16)}`
          ),
          h('h4', {}, 'Schema'),
          pretty(ds.schema),
          h('h4', {}, 'Profile'),
          pretty(ds.profile)
        )
      );
    }
    parts.push(data);

    parts.push(
      section('environment', 'Environment', d.environment ? kvTable(flatten(d.environment).slice(0, 400)) : 'Not captured.')
    );

    if (d.git) {
      const { diff, ...rest } = d.git as Record<string, unknown>;
      parts.push(
        section(
          'git',
          'Git',
          kvTable(flatten(rest)),
          diff ? h('details', { class: 'mlnb-git-diff' }, h('summary', {}, 'Diff'), pretty(String(diff))) : null
        )
      );
    } else {
      parts.push(section('git', 'Git', 'Not a git repository.'));
    }

    const checks = h('table', { class: 'mlnb-table mlnb-checks' });
    checks.appendChild(
      h('thead', {}, h('tr', {}, ...['', 'kind', 'name', 'value', 'threshold', 'message'].map(t => h('th', {}, t))))
    );
    const tbody = h('tbody');
    for (const c of d.checks) {
      const mark = c.passed === null ? '–' : c.passed ? '✓' : '✗';
      tbody.appendChild(
        h(
          'tr',
          { class: c.passed === false ? 'mlnb-check-failed' : c.passed ? 'mlnb-check-passed' : '' },
          h('td', {}, mark),
          h('td', {}, c.kind),
          h('td', {}, c.name),
          h('td', {}, fmt(num(c.value) ?? c.value)),
          h('td', {}, fmt(num(c.threshold) ?? c.threshold)),
          h('td', {}, c.message || '')
        )
      );
    }
    checks.appendChild(tbody);
    parts.push(section('checks', `Checks (${d.checks.length})`, d.checks.length ? checks : 'No checks.'));

    const artifacts = h('ul', { class: 'mlnb-artifacts' });
    for (const a of d.artifacts) {
      const href = apiUrl(a.url.split('/').map(encodeURIComponent).join('/'));
      const open = h('a', { attrs: { href, target: '_blank', rel: 'noopener' } }, a.name);
      const download = h('a', { attrs: { href: `${href}?download=1`, download: a.name }, class: 'mlnb-download' }, 'download');
      artifacts.appendChild(h('li', {}, open, ` · ${fmt(a.size)} bytes · `, download));
    }
    parts.push(section('artifacts', `Artifacts (${d.artifacts.length})`, d.artifacts.length ? artifacts : 'No artifacts.'));

    const tags = Object.entries(d.tags).sort();
    parts.push(section('tags', `Tags (${tags.length})`, tags.length ? kvTable(tags) : 'No tags.'));
    replace(this.node, ...parts);
  }

  private lineage(d: RunDetail): HTMLElement {
    const lineage = d.lineage;
    if (!lineage || !lineage.verdict) {
      return h('p', { class: 'mlnb-muted mlnb-lineage' }, 'No notebook lineage recorded for this run.');
    }
    const box = h('div', { class: `mlnb-lineage mlnb-lineage-${lineage.verdict === 'linear' ? 'ok' : 'warn'}` });
    box.appendChild(
      h(
        'p',
        {},
        lineage.verdict === 'linear'
          ? 'linear: the notebook ran top to bottom.'
          : `${lineage.verdict}: the results depend on cells run out of order.`
      )
    );
    const cells = lineage.out_of_order_cells || [];
    if (cells.length) {
      box.appendChild(
        h(
          'p',
          { class: 'mlnb-ooo-cells' },
          `Out-of-order cells: ${cells.map(c => (typeof c === 'object' ? describeCell(c) : `cell ${c}`)).join(', ')}`
        )
      );
    }
    const detail = lineage.detail as { reasons?: unknown } | string | null;
    const reasons =
      detail && typeof detail === 'object' && Array.isArray(detail.reasons) ? detail.reasons : [];
    if (reasons.length) {
      const list = h('ul', { class: 'mlnb-lineage-reasons' });
      for (const reason of reasons) {
        list.appendChild(h('li', {}, String(reason)));
      }
      box.appendChild(list);
    } else if (typeof detail === 'string' && detail) {
      box.appendChild(h('p', { class: 'mlnb-muted' }, detail));
    }
    return box;
  }

  private async loadCharts(d: RunDetail): Promise<void> {
    const keys = Object.keys(d.metrics).sort().slice(0, MAX_CHARTS);
    await Promise.all(
      keys.map(async key => {
        const slot = this.charts.get(key);
        if (!slot) {
          return;
        }
        try {
          const series = await requestAPI<MetricSeries>(
            `runs/${encodeURIComponent(this.runId)}/metrics/${encodeURIComponent(key)}?max_points=500`
          );
          const points = series.points.map(p => [p[0], num(p[1]) ?? NaN] as Point);
          replace(slot, lineChart(`${key} (${series.count} points)`, [{ label: d.run.name || this.runId, points }], 420, 200));
        } catch (error) {
          replace(slot, h('p', { class: 'mlnb-error' }, `${key}: ${(error as Error).message}`));
        }
      })
    );
  }
}

/** An out-of-order cell: its index, execution count and first line, as text. */
function describeCell(cell: unknown): string {
  const c = cell as Record<string, unknown>;
  const parts: string[] = [];
  if (c.index !== undefined) {
    parts.push(`cell ${c.index}`);
  }
  if (c.execution_count !== undefined) {
    parts.push(`[${c.execution_count}]`);
  }
  for (const key of ['source', 'first_line', 'reason', 'message']) {
    if (typeof c[key] === 'string') {
      parts.push(String(c[key]).split('\n')[0].slice(0, 120));
    }
  }
  return parts.length ? parts.join(' ') : JSON.stringify(cell);
}
