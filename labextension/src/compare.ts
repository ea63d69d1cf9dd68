/**
 * Compare (a main-area tab) of the runs ticked in the panel: metric curves overlaid,
 * parallel coordinates of the params that vary, and params / metrics (with Δ against a
 * chosen baseline) / data / environment / tags, only the rows that differ unless "all".
 */
import { Widget } from '@lumino/widgets';

import { CompareResult, CompareRow, MetricSeries } from './api';
import { Axis, Point, lineChart, parallelCoordinates } from './charts';
import { fmt, h, replace } from './dom';
import { num, query, requestAPI } from './request';

const MAX_CURVES = 8;
const SECTIONS = ['metrics', 'params', 'data', 'environment', 'git', 'tags', 'run'];

export class CompareView extends Widget {
  private baseline: string;
  private all = false;
  private body = h('div', { class: 'mlnb-compare-body' });
  private baselineSelect = h('select', { class: 'mlnb-compare-baseline jp-mod-styled' });
  private allBox = h('input', { attrs: { type: 'checkbox' } });

  constructor(readonly runIds: string[]) {
    super();
    this.addClass('mlnb-compare-view');
    this.id = `mlnb-compare-${runIds.map(r => r.slice(0, 6)).join('-')}`;
    this.title.label = `Compare ${runIds.length} runs`;
    this.title.closable = true;
    this.baseline = runIds[0];
    this.baselineSelect.addEventListener('change', () => {
      this.baseline = this.baselineSelect.value;
      void this.load(false);
    });
    this.allBox.addEventListener('change', () => {
      this.all = this.allBox.checked;
      void this.load(false);
    });
    const toolbar = h(
      'div',
      { class: 'mlnb-compare-toolbar' },
      h('label', {}, 'Baseline (Δ against it) ', this.baselineSelect),
      h('label', { class: 'mlnb-compare-all', title: 'Show the rows that are the same everywhere too' }, this.allBox, ' all rows')
    );
    this.node.appendChild(toolbar);
    this.node.appendChild(this.body);
    this.body.appendChild(h('p', { class: 'mlnb-muted' }, 'Loading…'));
    void this.load(true);
  }

  private async load(withCharts: boolean): Promise<void> {
    let result: CompareResult;
    try {
      result = await requestAPI<CompareResult>(
        `compare${query({ runs: this.runIds.join(','), baseline: this.baseline, all: this.all ? 1 : 0 })}`
      );
    } catch (error) {
      replace(this.body, h('pre', { class: 'mlnb-error' }, (error as Error).message));
      return;
    }
    const names = new Map(result.runs.map(r => [r.run_id, r.name || r.run_id.slice(0, 8)]));
    const label = (id: string) => `${names.get(id) ?? id.slice(0, 8)} (${id.slice(0, 6)})`;
    if (!this.baselineSelect.options.length) {
      for (const r of result.runs) {
        this.baselineSelect.appendChild(h('option', { attrs: { value: r.run_id } }, label(r.run_id)));
      }
    }
    this.baselineSelect.value = result.baseline;
    const curves = withCharts ? h('div', { class: 'mlnb-charts mlnb-compare-curves' }) : this.body.querySelector('.mlnb-compare-curves');
    const parallel = h('div', { class: 'mlnb-compare-parallel' });
    const tables = h('div', { class: 'mlnb-compare-tables' });
    const sectionNames = [...SECTIONS, ...Object.keys(result.sections).filter(n => !SECTIONS.includes(n))];
    for (const name of sectionNames) {
      if (result.sections[name] !== undefined || ['metrics', 'params'].includes(name)) {
        tables.appendChild(this.table(name, result.sections[name] || [], result, label));
      }
    }
    if (!this.all && result.hidden) {
      tables.appendChild(
        h('p', { class: 'mlnb-muted mlnb-compare-hidden' }, `${result.hidden} identical rows hidden: tick "all rows" to see them.`)
      );
    }
    const varying = result.varying_params;
    if (varying.length) {
      const paramRows = new Map((result.sections.params || []).map(r => [r.key, r]));
      const axes: Axis[] = varying.map(key => ({
        name: key,
        values: result.runs.map(r => {
          const v = paramRows.get(key)?.values[r.run_id];
          return v === undefined || v === null ? null : (v as string | number);
        })
      }));
      const firstMetric = (result.sections.metrics || [])[0];
      if (firstMetric) {
        axes.push({
          name: firstMetric.key,
          values: result.runs.map(r => num(firstMetric.values[r.run_id]) ?? null)
        });
      }
      parallel.appendChild(h('h3', {}, 'Params that vary'));
      parallel.appendChild(parallelCoordinates(axes, result.runs.map(r => label(r.run_id))));
    } else {
      parallel.appendChild(h('p', { class: 'mlnb-muted' }, 'The params are the same in every run.'));
    }
    replace(this.body, h('h3', {}, 'Metric curves'), curves, parallel, tables);
    if (withCharts && curves) {
      await this.loadCurves(result, label, curves as HTMLElement);
    }
  }

  private table(
    name: string,
    rows: CompareRow[],
    result: CompareResult,
    label: (id: string) => string
  ): HTMLElement {
    const section = h('section', { class: `mlnb-section mlnb-compare-${name}` }, h('h3', {}, name));
    if (!rows.length) {
      section.appendChild(h('p', { class: 'mlnb-muted' }, this.all ? 'Nothing recorded.' : 'No differences.'));
      return section;
    }
    const ids = result.runs.map(r => r.run_id);
    const head = h('tr', {}, h('th', {}, 'key'));
    for (const id of ids) {
      head.appendChild(h('th', { class: id === result.baseline ? 'mlnb-baseline' : '' }, label(id)));
    }
    const body = h('tbody');
    for (const row of rows) {
      const tr = h('tr', { class: row.same ? 'mlnb-same' : 'mlnb-differs' }, h('th', {}, row.key));
      for (const id of ids) {
        const value = row.values[id];
        const cell = h('td', { class: row.best === id ? 'mlnb-best' : '' }, fmt(num(value) ?? value));
        const delta = row.delta ? num(row.delta[id]) : null;
        if (row.delta && id !== result.baseline && delta !== null) {
          cell.appendChild(
            h('span', { class: `mlnb-delta ${delta > 0 ? 'mlnb-up' : delta < 0 ? 'mlnb-down' : ''}` }, ` Δ ${delta > 0 ? '+' : ''}${fmt(delta)}`)
          );
        }
        tr.appendChild(cell);
      }
      body.appendChild(tr);
    }
    section.appendChild(h('table', { class: 'mlnb-table' }, h('thead', {}, head), body));
    return section;
  }

  private async loadCurves(result: CompareResult, label: (id: string) => string, box: HTMLElement): Promise<void> {
    const keys = (result.sections.metrics || []).map(r => r.key).slice(0, MAX_CURVES);
    if (!keys.length) {
      box.appendChild(h('p', { class: 'mlnb-muted' }, this.all ? 'No metrics.' : 'No metrics differ: tick "all rows".'));
      return;
    }
    await Promise.all(
      keys.map(async key => {
        const slot = h('div', { class: 'mlnb-chart-slot' });
        box.appendChild(slot);
        const series = await Promise.all(
          result.runs.map(async r => {
            try {
              const s = await requestAPI<MetricSeries>(
                `runs/${encodeURIComponent(r.run_id)}/metrics/${encodeURIComponent(key)}?max_points=500`
              );
              return { label: label(r.run_id), points: s.points.map(p => [p[0], num(p[1]) ?? NaN] as Point) };
            } catch {
              return { label: label(r.run_id), points: [] as Point[] };
            }
          })
        );
        replace(slot, lineChart(key, series));
      })
    );
  }
}
