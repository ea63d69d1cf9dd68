/**
 * The runs panel (left sidebar): the runs of the current notebook (or all, or an
 * experiment), a filter box in mlnb's query language, status and linearity badges, pinned
 * params and metrics with a sparkline per pinned metric, live updates while a run runs,
 * and a windowed list: only the rows in view are in the DOM, pages come by keyset cursor
 * as you scroll, so 10,000 runs scroll as smoothly as 10.
 */
import { Widget } from '@lumino/widgets';

import { Job, RunDetail, RunRow, RunsPage } from './api';
import { Point, sparkline } from './charts';
import { checkBadges, fmt, h, linearityBadge, replace, statusBadge } from './dom';
import { ApiError, num, query, requestAPI } from './request';

/** What the panel asks of the application. */
export interface PanelHost {
  openRun(runId: string): void;
  compare(runIds: string[]): void;
  currentNotebook(): string | null;
}

export const ROW_HEIGHT = 28;
const OVERSCAN = 8;
const PAGE = 200;
const POLL_MS = 2000;
const COLUMNS_KEY = 'mlnb:runs-panel:columns';

type Scope = 'notebook' | 'all' | 'experiment';

interface Columns {
  params: string[];
  metrics: string[];
}

function parseColumns(text: string): Columns {
  const out: Columns = { params: [], metrics: [] };
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item.startsWith('params.') && item.length > 7) {
      out.params.push(item.slice(7));
    } else if (item.startsWith('metrics.') && item.length > 8) {
      out.metrics.push(item.slice(8));
    }
  }
  return out;
}

function columnsText(c: Columns): string {
  return [...c.params.map(p => `params.${p}`), ...c.metrics.map(m => `metrics.${m}`)].join(', ');
}

export class RunsPanel extends Widget {
  private runs: RunRow[] = [];
  private total = 0;
  private cursor: string | null = null;
  private exhausted = false;
  private loading: Promise<void> | null = null;
  private generation = 0;
  private scope: Scope = 'notebook';
  private filter = '';
  private order = '';
  private columns: Columns = { params: [], metrics: [] };
  private userColumns = false;
  private selected = new Set<string>();
  private sparks = new Map<string, { points: Point[]; at: number }>();
  private sparkTimer = 0;
  private pollTimer = 0;
  private frame = 0;
  private ticks = 0;
  private started = false;
  private lastNotebook: string | null = null;

  private scopeSelect: HTMLSelectElement;
  private experimentInput: HTMLInputElement;
  private filterInput: HTMLInputElement;
  private columnsInput: HTMLInputElement;
  private compareButton: HTMLButtonElement;
  private errorBox: HTMLElement;
  private warningBox: HTMLElement;
  private jobsBox: HTMLElement;
  private countBox: HTMLElement;
  private header: HTMLElement;
  private scroller: HTMLElement;
  private spacer: HTMLElement;

  constructor(private host: PanelHost) {
    super();
    this.id = 'mlnb-runs-panel';
    this.addClass('mlnb-runs-panel');
    this.title.caption = 'mlnb runs';
    const saved = window.localStorage.getItem(COLUMNS_KEY);
    if (saved !== null) {
      this.columns = parseColumns(saved);
      this.userColumns = true;
    }

    this.scopeSelect = h(
      'select',
      { class: 'mlnb-runs-scope jp-mod-styled', title: 'Which runs to list' },
      h('option', { attrs: { value: 'notebook' } }, 'This notebook'),
      h('option', { attrs: { value: 'all' } }, 'All runs'),
      h('option', { attrs: { value: 'experiment' } }, 'Experiment…')
    );
    this.scopeSelect.addEventListener('change', () => {
      this.scope = this.scopeSelect.value as Scope;
      this.experimentInput.style.display = this.scope === 'experiment' ? '' : 'none';
      void this.reload();
    });
    this.experimentInput = h('input', {
      class: 'mlnb-runs-experiment jp-mod-styled',
      attrs: { placeholder: 'experiment name', type: 'text' }
    });
    this.experimentInput.style.display = 'none';
    this.experimentInput.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        void this.reload();
      }
    });
    this.experimentInput.addEventListener('change', () => void this.reload());
    this.filterInput = h('input', {
      class: 'mlnb-runs-filter jp-mod-styled',
      attrs: {
        type: 'search',
        placeholder: "filter: metrics.acc > 0.9 and params.model = 'svc'",
        spellcheck: 'false'
      },
      title: 'mlnb query language (docs/query.md); Enter applies'
    });
    this.filterInput.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        this.filter = this.filterInput.value.trim();
        void this.reload();
      }
    });
    this.filterInput.addEventListener('search', () => {
      if (!this.filterInput.value && this.filter) {
        this.filter = '';
        void this.reload();
      }
    });
    this.columnsInput = h('input', {
      class: 'mlnb-runs-columns jp-mod-styled',
      attrs: { type: 'text', placeholder: 'pinned: params.lr, metrics.acc', spellcheck: 'false' },
      title: 'Pinned columns (params.X, metrics.X); Enter applies'
    });
    this.columnsInput.value = columnsText(this.columns);
    // once the user types here, the automatic pinning leaves the box alone
    this.columnsInput.addEventListener('input', () => {
      this.userColumns = true;
    });
    this.columnsInput.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        this.columns = parseColumns(this.columnsInput.value);
        this.userColumns = true;
        window.localStorage.setItem(COLUMNS_KEY, columnsText(this.columns));
        void this.reload();
      }
    });
    this.compareButton = h(
      'button',
      { class: 'mlnb-runs-compare jp-mod-styled jp-mod-accept', title: 'Compare the ticked runs' },
      'Compare'
    );
    this.compareButton.addEventListener('click', () => {
      if (this.selected.size >= 2) {
        this.host.compare([...this.selected]);
      }
    });
    const refresh = h('button', { class: 'mlnb-runs-refresh jp-mod-styled', title: 'Reload' }, '⟳');
    refresh.addEventListener('click', () => void this.reload());

    this.warningBox = h('div', { class: 'mlnb-version-warning' });
    this.warningBox.style.display = 'none';
    this.errorBox = h('pre', { class: 'mlnb-runs-error' });
    this.errorBox.style.display = 'none';
    this.jobsBox = h('div', { class: 'mlnb-jobs' });
    this.countBox = h('span', { class: 'mlnb-runs-count' });
    this.header = h('div', { class: 'mlnb-runs-header mlnb-run-grid' });
    this.spacer = h('div', { class: 'mlnb-runs-spacer' });
    // the header scrolls sideways with the rows and stays on top (sticky)
    this.scroller = h('div', { class: 'mlnb-runs-scroll' }, this.header, this.spacer);
    this.scroller.addEventListener('scroll', () => this.schedule());

    append(
      this.node,
      h('div', { class: 'mlnb-runs-title' }, h('span', {}, 'mlnb runs'), this.countBox),
      this.warningBox,
      h('div', { class: 'mlnb-runs-toolbar' }, this.scopeSelect, refresh, this.compareButton),
      this.experimentInput,
      this.filterInput,
      this.columnsInput,
      this.errorBox,
      this.jobsBox,
      this.scroller
    );
    this.updateCompareButton();
  }

  /** A persistent message above the list (the version handshake). */
  showWarning(message: string): void {
    this.warningBox.textContent = message;
    this.warningBox.style.display = '';
  }

  /** Call when the current notebook changes: the notebook scope follows it. */
  notebookChanged(): void {
    const path = this.host.currentNotebook();
    if (path !== this.lastNotebook && this.scope === 'notebook' && this.started) {
      void this.reload();
    }
  }

  /** Reload from the first page, keeping the selection. */
  async reload(): Promise<void> {
    this.generation++;
    this.runs = [];
    this.total = 0;
    this.cursor = null;
    this.exhausted = false;
    this.loading = null;
    this.scroller.scrollTop = 0;
    await this.ensureLoaded(this.visibleRange()[1]);
    if (!this.userColumns && this.runs.length && !this.columns.params.length && !this.columns.metrics.length) {
      await this.autoPin(this.runs[0].run_id);
    }
  }

  /** Follow a job started by "Run with parameters…": progress per cell, then its run. */
  trackJob(job: Job): void {
    const label = h('span', { class: 'mlnb-job-label' });
    const bar = h('progress', { class: 'mlnb-job-progress' });
    const close = h('button', { class: 'mlnb-job-close', title: 'Hide' }, '×');
    const box = h('div', { class: 'mlnb-job' }, label, bar, close);
    box.dataset.jobId = job.job_id;
    close.addEventListener('click', () => {
      box.remove();
      window.clearInterval(timer);
    });
    this.jobsBox.appendChild(box);
    let seenRun = false;
    const show = (j: Job) => {
      const running = j.current_cell !== null && j.current_cell !== undefined ? ` · running cell ${j.current_cell + 1}` : '';
      const cells = j.cells_total ? ` · ${j.cells_done}/${j.cells_total} cells` : '';
      label.textContent = `${j.path}: ${j.status}${cells}${running}${j.error ? ` · ${j.error}` : ''}`;
      label.title = label.textContent;
      box.className = `mlnb-job mlnb-job-${j.status}`;
      bar.max = Math.max(j.cells_total, 1);
      bar.value = j.status === 'finished' ? bar.max : j.cells_done;
      if (j.run_id && !seenRun) {
        seenRun = true;
        const runId = j.run_id;
        const open = h('button', { class: 'mlnb-job-open jp-mod-styled', title: 'Open the run' }, 'run');
        open.addEventListener('click', () => this.host.openRun(runId));
        box.insertBefore(open, close);
        void this.refresh();
      }
    };
    show(job);
    const timer = window.setInterval(async () => {
      try {
        const j = await requestAPI<Job>(`jobs/${encodeURIComponent(job.job_id)}`);
        show(j);
        if (j.status === 'finished' || j.status === 'failed') {
          window.clearInterval(timer);
          void this.refresh();
        }
      } catch (error) {
        label.textContent = `${job.path}: ${(error as Error).message}`;
        window.clearInterval(timer);
      }
    }, 1000);
  }

  protected onAfterShow(): void {
    if (!this.started) {
      this.started = true;
      void this.reload();
    } else {
      this.schedule();
    }
    if (!this.pollTimer) {
      this.pollTimer = window.setInterval(() => void this.tick(), POLL_MS);
    }
  }

  protected onResize(): void {
    this.schedule();
  }

  dispose(): void {
    window.clearInterval(this.pollTimer);
    window.clearTimeout(this.sparkTimer);
    super.dispose();
  }

  // -- data --------------------------------------------------------------------------

  private params(limit: number, cursor: string | null): string {
    const notebook = this.scope === 'notebook' ? this.host.currentNotebook() : null;
    const columns = [
      ...this.columns.params.map(p => `params.${p}`),
      ...this.columns.metrics.map(m => `metrics.${m}`)
    ].join(',');
    return query({
      scope: this.scope === 'notebook' && notebook === null ? 'all' : this.scope,
      notebook,
      experiment: this.scope === 'experiment' ? this.experimentInput.value.trim() : null,
      filter: this.filter,
      order: this.order,
      limit,
      cursor,
      columns
    });
  }

  private async ensureLoaded(index: number): Promise<void> {
    const generation = this.generation;
    while (this.runs.length <= index && !this.exhausted && generation === this.generation) {
      if (!this.loading) {
        this.loading = this.fetchPage(generation).finally(() => {
          if (generation === this.generation) {
            this.loading = null;
          }
        });
      }
      await this.loading;
    }
  }

  private async fetchPage(generation: number): Promise<void> {
    this.lastNotebook = this.host.currentNotebook();
    if (this.scope === 'experiment' && !this.experimentInput.value.trim()) {
      this.exhausted = true;
      this.showError(null);
      this.render();
      this.experimentInput.focus();
      return;
    }
    let page: RunsPage;
    try {
      page = await requestAPI<RunsPage>(`runs${this.params(this.runs.length ? PAGE : 50, this.cursor)}`);
    } catch (error) {
      if (generation === this.generation) {
        this.exhausted = true;
        this.showError(error as Error);
        this.render();
      }
      return;
    }
    if (generation !== this.generation) {
      return;
    }
    this.showError(null);
    this.runs.push(...page.runs);
    this.total = page.total;
    this.cursor = page.next_cursor;
    this.exhausted = !page.next_cursor || !page.runs.length;
    this.render();
  }

  /** Poll: while a run is running every ~2 s, otherwise every ~6 s (new runs appear). */
  private async tick(): Promise<void> {
    if (!this.isVisible || document.hidden || !this.started || this.loading) {
      return;
    }
    this.ticks++;
    const running = this.runs.some(r => r.status === 'running' || r.status === 'queued');
    if (running || this.ticks % 3 === 0) {
      await this.refresh();
    }
  }

  /** Re-read what is loaded (the first pages, or the visible running rows when deep). */
  async refresh(): Promise<void> {
    if (!this.started || (this.scope === 'experiment' && !this.experimentInput.value.trim())) {
      return;
    }
    const generation = this.generation;
    if (this.runs.length > 500) {
      const [first, last] = this.visibleRange();
      await Promise.all(
        this.runs.slice(first, last + 1).map(async (run, i) => {
          if (run.status !== 'running') {
            return;
          }
          const detail = await requestAPI<RunDetail>(`runs/${run.run_id}`).catch(() => null);
          if (detail && generation === this.generation) {
            const metrics: Record<string, number | string> = {};
            for (const [k, v] of Object.entries(detail.metrics)) {
              metrics[k] = v.value;
            }
            this.runs[first + i] = { ...run, status: detail.run.status, metrics, params: detail.params };
          }
        })
      );
      this.dropRunningSparks();
      this.render();
      return;
    }
    let page: RunsPage;
    try {
      page = await requestAPI<RunsPage>(`runs${this.params(Math.max(50, this.runs.length), null)}`);
    } catch (error) {
      return;
    }
    if (generation !== this.generation) {
      return;
    }
    this.runs = page.runs;
    this.total = page.total;
    this.cursor = page.next_cursor;
    this.exhausted = !page.next_cursor || !page.runs.length;
    this.dropRunningSparks();
    this.render();
    if (!this.userColumns && this.runs.length && !this.columns.params.length && !this.columns.metrics.length) {
      await this.autoPin(this.runs[0].run_id);
    }
  }

  private dropRunningSparks(): void {
    for (const run of this.runs) {
      if (run.status === 'running') {
        for (const key of this.columns.metrics) {
          this.sparks.delete(`${run.run_id}\u0000${key}`);
        }
      }
    }
  }

  /** No pinned columns yet: pin the newest run's first two params and metrics. */
  private async autoPin(runId: string): Promise<void> {
    const detail = await requestAPI<RunDetail>(`runs/${runId}`).catch(() => null);
    if (!detail || this.userColumns) {
      return;
    }
    const params = Object.keys(detail.params).sort().slice(0, 2);
    const metrics = Object.keys(detail.metrics).sort().slice(0, 2);
    if (!params.length && !metrics.length) {
      return;
    }
    this.columns = { params, metrics };
    this.columnsInput.value = columnsText(this.columns);
    await this.refresh();
  }

  private showError(error: Error | null): void {
    if (!error) {
      this.errorBox.style.display = 'none';
      this.errorBox.textContent = '';
      return;
    }
    this.errorBox.textContent = error instanceof ApiError ? error.message : String(error);
    this.errorBox.style.display = '';
  }

  // -- rendering ---------------------------------------------------------------------

  private visibleRange(): [number, number] {
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.ceil((this.scroller.scrollTop + height) / ROW_HEIGHT) + OVERSCAN;
    return [first, last];
  }

  private schedule(): void {
    if (this.frame) {
      return;
    }
    this.frame = window.requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
      const last = this.visibleRange()[1];
      if (last >= this.runs.length && !this.exhausted) {
        void this.ensureLoaded(Math.min(last, Math.max(this.total - 1, 0)));
      }
    });
  }

  private template(): string {
    const params = this.columns.params.map(() => 'minmax(48px, 72px)');
    const metrics = this.columns.metrics.map(() => 'minmax(96px, 120px)');
    return ['20px', '70px', 'minmax(90px, 1fr)', ...params, ...metrics].join(' ');
  }

  private updateCompareButton(): void {
    this.compareButton.disabled = this.selected.size < 2;
    this.compareButton.textContent = this.selected.size ? `Compare (${this.selected.size})` : 'Compare';
  }

  private render(): void {
    const template = this.template();
    const minWidth = `${230 + 72 * this.columns.params.length + 120 * this.columns.metrics.length}px`;
    this.countBox.textContent = `${this.total} run${this.total === 1 ? '' : 's'}`;
    const notebook = this.host.currentNotebook();
    this.countBox.title =
      this.scope === 'notebook'
        ? notebook
          ? `runs of ${notebook}`
          : 'no notebook is open: all runs'
        : '';
    this.scopeSelect.options[0].textContent = notebook
      ? `This notebook (${notebook.split('/').pop()})`
      : 'This notebook (none open: all)';
    this.header.style.gridTemplateColumns = template;
    this.header.style.minWidth = minWidth;
    const sortable = (label: string, key: string, cls: string) => {
      const cell = h('span', { class: cls, title: `Sort by ${key}` }, label);
      const active = this.order.startsWith(key + ' ');
      if (active) {
        cell.textContent = `${label} ${this.order.endsWith('desc') ? '▼' : '▲'}`;
      }
      cell.addEventListener('click', () => {
        this.order = active && this.order.endsWith('desc') ? `${key} asc` : `${key} desc`;
        void this.reload();
      });
      return cell;
    };
    replace(
      this.header,
      h('span', {}, ''),
      h('span', {}, 'status'),
      sortable('name', 'name', 'mlnb-col-name'),
      ...this.columns.params.map(p => sortable(p, `params.${p}`, 'mlnb-col-param')),
      ...this.columns.metrics.map(m => sortable(m, `metrics.${m}`, 'mlnb-col-metric'))
    );
    this.spacer.style.height = `${Math.max(this.total, this.runs.length) * ROW_HEIGHT}px`;
    this.spacer.style.minWidth = minWidth;
    const [first, lastWanted] = this.visibleRange();
    const last = Math.min(lastWanted, Math.max(this.total, this.runs.length) - 1);
    const rows: HTMLElement[] = [];
    for (let i = first; i <= last; i++) {
      rows.push(this.row(i, this.runs[i], template));
    }
    replace(this.spacer, ...rows);
    if (!this.runs.length && this.exhausted && this.errorBox.style.display === 'none') {
      const notebook = this.host.currentNotebook();
      const empty =
        this.scope === 'notebook' && notebook
          ? `No runs of ${notebook} yet: %track start in it, or choose "All runs".`
          : this.scope === 'experiment' && !this.experimentInput.value.trim()
            ? 'Type the name of an experiment above, then Enter.'
            : 'No runs match.';
      this.spacer.appendChild(h('div', { class: 'mlnb-runs-empty' }, empty));
    }
    window.clearTimeout(this.sparkTimer);
    this.sparkTimer = window.setTimeout(() => void this.loadSparks(first, last), 120);
  }

  private row(index: number, run: RunRow | undefined, template: string): HTMLElement {
    const el = h('div', { class: 'mlnb-run-row mlnb-run-grid' });
    el.style.top = `${index * ROW_HEIGHT}px`;
    el.style.gridTemplateColumns = template;
    if (!run) {
      el.classList.add('mlnb-run-placeholder');
      el.appendChild(h('span', { class: 'mlnb-run-loading' }, '…'));
      return el;
    }
    el.dataset.runId = run.run_id;
    const box = h('input', { attrs: { type: 'checkbox' }, class: 'mlnb-run-select', title: 'Select to compare' });
    box.checked = this.selected.has(run.run_id);
    box.addEventListener('click', event => event.stopPropagation());
    box.addEventListener('change', () => {
      if (box.checked) {
        this.selected.add(run.run_id);
      } else {
        this.selected.delete(run.run_id);
      }
      el.classList.toggle('mlnb-mod-selected', box.checked);
      this.updateCompareButton();
    });
    el.classList.toggle('mlnb-mod-selected', box.checked);
    const name = h(
      'span',
      { class: 'mlnb-run-name', title: `${run.name} · ${run.run_id} · ${run.experiment}` },
      h('span', { class: 'mlnb-run-label' }, run.name || run.run_id.slice(0, 8)),
      linearityBadge(run.linearity),
      ...checkBadges(run.checks)
    );
    append(el, box, statusBadge(run.status), name);
    for (const p of this.columns.params) {
      const value = run.params ? run.params[p] : undefined;
      el.appendChild(h('span', { class: 'mlnb-run-param', title: `${p} = ${value ?? ''}` }, value ?? ''));
    }
    for (const m of this.columns.metrics) {
      const value = run.metrics ? run.metrics[m] : undefined;
      const cell = h(
        'span',
        { class: 'mlnb-run-metric', title: `${m} = ${fmt(num(value) ?? value)}` },
        h('span', { class: 'mlnb-run-metric-value' }, fmt(num(value) ?? value))
      );
      const spark = this.sparks.get(`${run.run_id}\u0000${m}`);
      if (spark) {
        cell.appendChild(sparkline(spark.points));
      }
      el.appendChild(cell);
    }
    el.tabIndex = 0;
    el.addEventListener('click', () => this.host.openRun(run.run_id));
    el.addEventListener('keydown', event => {
      if (event.key === 'Enter' && event.target === el) {
        this.host.openRun(run.run_id);
      }
    });
    return el;
  }

  private async loadSparks(first: number, last: number): Promise<void> {
    if (!this.columns.metrics.length) {
      return;
    }
    const wanted: [RunRow, string][] = [];
    for (const run of this.runs.slice(first, last + 1)) {
      for (const key of this.columns.metrics) {
        if (run.metrics && run.metrics[key] !== undefined && !this.sparks.has(`${run.run_id}\u0000${key}`)) {
          wanted.push([run, key]);
        }
      }
    }
    if (!wanted.length) {
      return;
    }
    if (this.sparks.size > 4000) {
      this.sparks.clear(); // a long scroll: keep memory bounded, the rows in view refetch
    }
    const generation = this.generation;
    await Promise.all(
      wanted.map(async ([run, key]) => {
        try {
          const series = await requestAPI<{ points: [number, unknown, number][] }>(
            `runs/${run.run_id}/metrics/${encodeURIComponent(key)}?max_points=60`
          );
          const points = series.points.map(p => [p[0], num(p[1]) ?? NaN] as Point);
          this.sparks.set(`${run.run_id}\u0000${key}`, { points, at: Date.now() });
        } catch {
          this.sparks.set(`${run.run_id}\u0000${key}`, { points: [], at: Date.now() });
        }
      })
    );
    if (generation === this.generation) {
      const [f, l] = this.visibleRange();
      if (f <= last && l >= first) {
        this.renderRowsOnly();
      }
    }
  }

  /** Re-render rows without scheduling another sparkline load. */
  private renderRowsOnly(): void {
    const template = this.template();
    const [first, lastWanted] = this.visibleRange();
    const last = Math.min(lastWanted, Math.max(this.total, this.runs.length) - 1);
    const rows: HTMLElement[] = [];
    for (let i = first; i <= last; i++) {
      rows.push(this.row(i, this.runs[i], template));
    }
    replace(this.spacer, ...rows);
  }
}

function append(el: HTMLElement, ...children: (Node | null)[]): void {
  for (const child of children) {
    if (child) {
      el.appendChild(child);
    }
  }
}
