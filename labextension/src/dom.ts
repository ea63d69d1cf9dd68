/**
 * Building DOM from store data as text only: `h()` sets text with `textContent` and never
 * parses HTML, so a run named `<img src=x onerror=...>` shows those characters and runs
 * nothing.
 */

type Child = Node | string | number | null | undefined | false;

/** An element with classes, plain attributes and children (strings become text nodes). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { class?: string; attrs?: Record<string, string>; title?: string } = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) {
    el.className = props.class;
  }
  if (props.title !== undefined) {
    el.title = props.title;
  }
  for (const [key, value] of Object.entries(props.attrs || {})) {
    el.setAttribute(key, value);
  }
  append(el, ...children);
  return el;
}

/** Append children; strings and numbers as text nodes. */
export function append(el: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children. */
export function replace(el: Node, ...children: Child[]): void {
  while (el.firstChild) {
    el.removeChild(el.firstChild);
  }
  append(el, ...children);
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element with numeric or plain attributes. */
export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
  ...children: (SVGElement | string)[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    el.setAttribute(key, String(value));
  }
  for (const child of children) {
    el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

/** A number as a short string (4 significant digits), NaN and infinities spelled out. */
export function fmt(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      return String(value);
    }
    if (Number.isInteger(value) && Math.abs(value) < 1e9) {
      return String(value);
    }
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) {
      return value.toExponential(3);
    }
    return String(Number(value.toPrecision(4)));
  }
  if (typeof value === 'object') {
    return JSON.stringify(value);
  }
  return String(value);
}

/** A duration in seconds as `1m 05s`. */
export function fmtDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  }
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  if (m < 60) {
    return `${m}m ${String(s).padStart(2, '0')}s`;
  }
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** A Unix time as local `YYYY-MM-DD HH:MM`. */
export function fmtTime(t: number | null | undefined): string {
  if (!t) {
    return '';
  }
  const d = new Date(t * 1000);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(
    d.getMinutes()
  )}`;
}

/** A status badge (`running`, `finished`, ...). */
export function statusBadge(status: string): HTMLElement {
  return h('span', { class: `mlnb-badge mlnb-status mlnb-status-${cssToken(status)}` }, status);
}

/** A linearity badge, or nothing when the run has no lineage. */
export function linearityBadge(linearity: string | null | undefined): HTMLElement | null {
  if (!linearity) {
    return null;
  }
  return h(
    'span',
    {
      class: `mlnb-badge mlnb-linearity mlnb-linearity-${cssToken(linearity)}`,
      title:
        linearity === 'linear'
          ? 'The notebook ran top to bottom'
          : 'Cells ran out of order: the details name them'
    },
    linearity
  );
}

/** One badge per family of a run's newest checks (gate, schema, drift, ...): the family's
 * name, marked passed or failed; the title says how many rows failed. */
export function checkBadges(checks: Record<string, string> | undefined): HTMLElement[] {
  return Object.entries(checks || {}).map(([family, verdict]) => {
    const passed = verdict === 'PASS';
    return h(
      'span',
      {
        class: `mlnb-badge mlnb-check mlnb-check-${passed ? 'pass' : 'fail'}`,
        title: `${family}: ${verdict}`
      },
      `${family} ${passed ? '\u2713' : '\u2717'}`
    );
  });
}

/** A value safe to use in a class name. */
export function cssToken(value: string): string {
  return value.replace(/[^a-zA-Z0-9_-]/g, '_');
}

/** A two-column table of key → value (values as text). */
export function kvTable(entries: [string, unknown][], cls = 'mlnb-kv'): HTMLTableElement {
  const table = h('table', { class: cls });
  const body = h('tbody');
  for (const [key, value] of entries) {
    body.appendChild(h('tr', {}, h('th', {}, key), h('td', {}, fmt(value))));
  }
  table.appendChild(body);
  return table;
}

/** Nested objects flattened to `a.b.c` keys. */
export function flatten(value: unknown, prefix = '', out: [string, unknown][] = []) {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      flatten(v, prefix ? `${prefix}.${k}` : k, out);
    }
  } else {
    out.push([prefix, value]);
  }
  return out;
}
