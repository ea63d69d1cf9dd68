/**
 * Small SVG charts drawn here (no chart library): a sparkline, metric curves with axes and
 * a legend, and parallel coordinates. Text goes in with `textContent` only.
 */
import { h, fmt, svg } from './dom';

/** Colours readable on the light and the dark theme. */
export const PALETTE = [
  '#4c78a8',
  '#f58518',
  '#54a24b',
  '#e45756',
  '#72b7b2',
  '#b279a2',
  '#eeca3b',
  '#ff9da6',
  '#9d755d',
  '#bab0ac'
];

export type Point = [number, number]; // step, value

function finite(points: Point[]): Point[] {
  return points.filter(p => Number.isFinite(p[0]) && Number.isFinite(p[1]));
}

function extent(values: number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (!Number.isFinite(lo)) {
    return [0, 1];
  }
  if (lo === hi) {
    return [lo - (Math.abs(lo) || 1) * 0.5, hi + (Math.abs(hi) || 1) * 0.5];
  }
  return [lo, hi];
}

function path(points: Point[], x: (v: number) => number, y: (v: number) => number): string {
  return points
    .map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`)
    .join('');
}

/** A sparkline of one series (a dot when it has one point). */
export function sparkline(raw: Point[], width = 60, height = 16): SVGSVGElement {
  const points = finite(raw);
  const el = svg('svg', {
    class: 'mlnb-sparkline',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`
  });
  if (!points.length) {
    return el;
  }
  const [x0, x1] = extent(points.map(p => p[0]));
  const [y0, y1] = extent(points.map(p => p[1]));
  const x = (v: number) => 1 + ((v - x0) / (x1 - x0)) * (width - 2);
  const y = (v: number) => height - 1 - ((v - y0) / (y1 - y0)) * (height - 2);
  if (points.length === 1) {
    el.appendChild(svg('circle', { cx: width / 2, cy: y(points[0][1]), r: 1.5 }));
  } else {
    el.appendChild(svg('path', { d: path(points, x, y) }));
  }
  return el;
}

export interface Series {
  label: string;
  points: Point[];
}

/** Curves of one metric for several runs, with axes, ticks and a legend. */
export function lineChart(title: string, series: Series[], width = 520, height = 240): HTMLElement {
  const margin = { left: 56, right: 12, top: 22, bottom: 28 };
  const all = series.flatMap(s => finite(s.points));
  const [x0, x1] = extent(all.map(p => p[0]));
  const [y0, y1] = extent(all.map(p => p[1]));
  const iw = width - margin.left - margin.right;
  const ih = height - margin.top - margin.bottom;
  const x = (v: number) => margin.left + ((v - x0) / (x1 - x0)) * iw;
  const y = (v: number) => margin.top + ih - ((v - y0) / (y1 - y0)) * ih;
  const chart = svg('svg', {
    class: 'mlnb-chart',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img'
  });
  const label = svg('text', { x: margin.left, y: 14, class: 'mlnb-chart-title' });
  label.textContent = title;
  chart.appendChild(label);
  chart.appendChild(
    svg('rect', { x: margin.left, y: margin.top, width: iw, height: ih, class: 'mlnb-chart-frame' })
  );
  for (let i = 0; i <= 4; i++) {
    const vy = y0 + ((y1 - y0) * i) / 4;
    const py = y(vy);
    chart.appendChild(
      svg('line', { x1: margin.left, x2: margin.left + iw, y1: py, y2: py, class: 'mlnb-chart-grid' })
    );
    const t = svg('text', { x: margin.left - 4, y: py + 4, class: 'mlnb-chart-tick', 'text-anchor': 'end' });
    t.textContent = fmt(vy);
    chart.appendChild(t);
    const vx = x0 + ((x1 - x0) * i) / 4;
    const tx = svg('text', {
      x: x(vx),
      y: margin.top + ih + 16,
      class: 'mlnb-chart-tick',
      'text-anchor': 'middle'
    });
    tx.textContent = fmt(Math.round(vx * 100) / 100);
    chart.appendChild(tx);
  }
  series.forEach((s, i) => {
    const points = finite(s.points);
    const colour = PALETTE[i % PALETTE.length];
    if (points.length === 1) {
      chart.appendChild(
        svg('circle', { cx: x(points[0][0]), cy: y(points[0][1]), r: 3, fill: colour, class: 'mlnb-chart-point' })
      );
    } else if (points.length > 1) {
      chart.appendChild(
        svg('path', { d: path(points, x, y), stroke: colour, class: 'mlnb-chart-line' })
      );
    }
  });
  const legend = h('div', { class: 'mlnb-legend' });
  series.forEach((s, i) => {
    const swatch = h('span', { class: 'mlnb-swatch' });
    swatch.style.background = PALETTE[i % PALETTE.length];
    legend.appendChild(h('span', { class: 'mlnb-legend-item' }, swatch, s.label));
  });
  return h('figure', { class: 'mlnb-figure' }, chart, legend);
}

export interface Axis {
  name: string;
  values: (string | number | null)[]; // one per line
}

/** Parallel coordinates: one vertical axis per varying param (numeric or categorical), one
 * line per run. */
export function parallelCoordinates(axes: Axis[], labels: string[], width = 640, height = 260): HTMLElement {
  const margin = { left: 40, right: 40, top: 24, bottom: 24 };
  const chart = svg('svg', {
    class: 'mlnb-chart mlnb-parallel',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img'
  });
  const ih = height - margin.top - margin.bottom;
  const step = axes.length > 1 ? (width - margin.left - margin.right) / (axes.length - 1) : 0;
  const scales = axes.map(axis => {
    const numbers = axis.values.map(v => (v === null || v === '' ? NaN : Number(v)));
    const numeric = numbers.every(n => Number.isFinite(n));
    if (numeric) {
      const [lo, hi] = extent(numbers);
      return {
        ticks: [
          [lo, fmt(lo)],
          [hi, fmt(hi)]
        ] as [number, string][],
        pos: (i: number) => margin.top + ih - ((numbers[i] - lo) / (hi - lo)) * ih,
        tickPos: (v: number) => margin.top + ih - ((v - lo) / (hi - lo)) * ih
      };
    }
    const cats = Array.from(new Set(axis.values.map(v => String(v ?? '')))).sort();
    const at = (c: string) =>
      cats.length > 1 ? margin.top + (cats.indexOf(c) / (cats.length - 1)) * ih : margin.top + ih / 2;
    return {
      ticks: cats.map(c => [at(c), c] as [number, string]),
      pos: (i: number) => at(String(axis.values[i] ?? '')),
      tickPos: (v: number) => v
    };
  });
  axes.forEach((axis, a) => {
    const ax = margin.left + a * step;
    chart.appendChild(svg('line', { x1: ax, x2: ax, y1: margin.top, y2: margin.top + ih, class: 'mlnb-axis' }));
    const name = svg('text', { x: ax, y: 14, class: 'mlnb-chart-title', 'text-anchor': 'middle' });
    name.textContent = axis.name;
    chart.appendChild(name);
    for (const [v, text] of scales[a].ticks) {
      const t = svg('text', { x: ax + 4, y: scales[a].tickPos(v) + 4, class: 'mlnb-chart-tick' });
      t.textContent = text;
      chart.appendChild(t);
    }
  });
  labels.forEach((label, i) => {
    const points = axes.map((_, a) => `${margin.left + a * step},${scales[a].pos(i).toFixed(1)}`);
    const line = svg('polyline', {
      points: points.join(' '),
      stroke: PALETTE[i % PALETTE.length],
      class: 'mlnb-chart-line'
    });
    const title = svg('title');
    title.textContent = label;
    line.appendChild(title);
    chart.appendChild(line);
  });
  const legend = h('div', { class: 'mlnb-legend' });
  labels.forEach((label, i) => {
    const swatch = h('span', { class: 'mlnb-swatch' });
    swatch.style.background = PALETTE[i % PALETTE.length];
    legend.appendChild(h('span', { class: 'mlnb-legend-item' }, swatch, label));
  });
  return h('figure', { class: 'mlnb-figure' }, chart, legend);
}
