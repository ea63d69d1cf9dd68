/**
 * "Run with parameters…": a form generated from the notebook's parameters cell (types,
 * defaults, validation), then POST jobs; the runs panel follows the job cell by cell.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { Job, NotebookParameter, NotebookParams } from './api';
import { fmt, h } from './dom';
import { ApiError, query, requestAPI } from './request';

type Values = Record<string, string | boolean>;

/** The typed value of a field, or an error message. */
export function parseValue(p: NotebookParameter, raw: string | boolean): { value?: unknown; error?: string } {
  if (p.type === 'bool') {
    return { value: Boolean(raw) };
  }
  const text = String(raw).trim();
  switch (p.type) {
    case 'int':
      return /^[-+]?\d+$/.test(text) ? { value: parseInt(text, 10) } : { error: `${p.name} must be an integer` };
    case 'float': {
      const n = Number(text);
      return text !== '' && Number.isFinite(n) ? { value: n } : { error: `${p.name} must be a number` };
    }
    case 'str':
      return { value: String(raw) };
    default:
      if (text === '' && (p.default === null || p.default === undefined)) {
        return { value: null };
      }
      try {
        return { value: JSON.parse(text) };
      } catch {
        return { error: `${p.name} must be JSON (e.g. [1, 2] or {"a": 1})` };
      }
  }
}

function initial(p: NotebookParameter): string | boolean {
  if (p.type === 'bool') {
    return Boolean(p.default);
  }
  if (p.type === 'str') {
    return p.default === null || p.default === undefined ? '' : String(p.default);
  }
  if (p.type === 'int' || p.type === 'float') {
    return p.default === null || p.default === undefined ? '' : fmt(p.default);
  }
  return p.default === undefined || p.default === null ? '' : JSON.stringify(p.default);
}

class ParamsForm extends Widget {
  private inputs = new Map<string, HTMLInputElement>();
  private experiment: HTMLInputElement;

  constructor(info: NotebookParams, values: Values, experiment: string, errors: string[]) {
    super();
    this.addClass('mlnb-params-form');
    if (errors.length) {
      const list = h('ul', { class: 'mlnb-params-errors' });
      errors.forEach(e => list.appendChild(h('li', {}, e)));
      this.node.appendChild(list);
    }
    if (!info.has_parameters_cell) {
      this.node.appendChild(
        h('p', { class: 'mlnb-muted' }, 'This notebook has no cell tagged "parameters": it runs as it is.')
      );
    }
    for (const p of info.parameters) {
      const input = h('input', {
        class: 'jp-mod-styled mlnb-param-input',
        attrs: { name: p.name, type: p.type === 'bool' ? 'checkbox' : 'text', spellcheck: 'false' }
      });
      input.dataset.param = p.name;
      const value = values[p.name];
      if (p.type === 'bool') {
        input.checked = Boolean(value);
      } else {
        input.value = String(value);
      }
      input.addEventListener('input', () => {
        const check = parseValue(p, input.type === 'checkbox' ? input.checked : input.value);
        input.classList.toggle('mlnb-invalid', Boolean(check.error));
        input.title = check.error || '';
      });
      this.inputs.set(p.name, input);
      this.node.appendChild(
        h(
          'label',
          { class: 'mlnb-param' },
          h('span', { class: 'mlnb-param-name' }, p.name),
          h('span', { class: 'mlnb-param-type' }, p.type),
          input,
          p.help ? h('span', { class: 'mlnb-muted mlnb-param-help' }, p.help) : null
        )
      );
    }
    this.experiment = h('input', {
      class: 'jp-mod-styled mlnb-param-experiment',
      attrs: { type: 'text', placeholder: '(default)' }
    });
    this.experiment.value = experiment;
    this.node.appendChild(
      h('label', { class: 'mlnb-param' }, h('span', { class: 'mlnb-param-name' }, 'experiment'), h('span'), this.experiment)
    );
  }

  values(): Values {
    const out: Values = {};
    for (const [name, input] of this.inputs) {
      out[name] = input.type === 'checkbox' ? input.checked : input.value;
    }
    return out;
  }

  experimentName(): string {
    return this.experiment.value.trim();
  }
}

/** Ask for the values, validate them (the form comes back with the errors), start the job. */
export async function runWithParameters(path: string): Promise<Job | null> {
  const info = await requestAPI<NotebookParams>(`notebooks/params${query({ path })}`);
  let values: Values = {};
  for (const p of info.parameters) {
    values[p.name] = initial(p);
  }
  let experiment = '';
  let errors: string[] = [];
  for (;;) {
    const form = new ParamsForm(info, values, experiment, errors);
    const result = await showDialog({
      title: `Run ${path} with parameters`,
      body: form,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })],
      focusNodeSelector: 'input'
    });
    values = form.values();
    experiment = form.experimentName();
    if (!result.button.accept) {
      return null;
    }
    errors = [];
    const parameters: Record<string, unknown> = {};
    for (const p of info.parameters) {
      const parsed = parseValue(p, values[p.name]);
      if (parsed.error) {
        errors.push(parsed.error);
      } else {
        parameters[p.name] = parsed.value;
      }
    }
    if (!errors.length) {
      try {
        return await requestAPI<Job>('jobs', {
          method: 'POST',
          body: JSON.stringify({ path, parameters, experiment: experiment || null })
        });
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 400) {
          throw error;
        }
        errors = [error.message]; // the server's check of the values: back to the form
      }
    }
  }
}
