/**
 * mlnb in JupyterLab 4 and Notebook 7: the runs panel (left sidebar), run details and
 * compare tabs, "Run with parameters…" on the notebook toolbar and in the palette, and
 * the version handshake with mlnb's server extension.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, Notification, ToolbarButton } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { PageConfig } from '@jupyterlab/coreutils';
import { LabIcon } from '@jupyterlab/ui-components';

import { VersionInfo } from './api';
import { CompareView } from './compare';
import { RunDetails } from './details';
import { RunsPanel } from './panel';
import { ApiError, requestAPI } from './request';
import { runWithParameters } from './runparams';
import { FRONTEND_VERSION, mismatchMessage } from './version';

const ICON = new LabIcon({
  name: 'mlnb:runs',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M3 20h18v2H3zM5 12h3v6H5zm5-5h3v11h-3zm5 3h3v8h-3zm5-6h1v14h-1z"/></svg>'
});

const COMMANDS = {
  openRuns: 'mlnb:open-runs-panel',
  openRun: 'mlnb:open-run',
  compare: 'mlnb:compare-runs',
  runWithParameters: 'mlnb:run-with-parameters'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlnb-labextension:plugin',
  description: 'mlnb runs panel, run details, compare and run with parameters.',
  autoStart: true,
  // The notebook tracker is optional: Notebook 7's file browser page has no notebooks, and
  // requiring the tracker there loads the document manager where it has no settings.
  requires: [],
  optional: [INotebookTracker, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker | null,
    palette: ICommandPalette | null
  ) => {
    const currentNotebook = () => tracker?.currentWidget?.context.path ?? null;
    const open = new Map<string, MainAreaWidget>();
    const addMain = (id: string, make: () => MainAreaWidget) => {
      let widget = open.get(id);
      if (!widget || widget.isDisposed) {
        widget = make();
        widget.id = id;
        open.set(id, widget);
        app.shell.add(widget, 'main');
      }
      app.shell.activateById(widget.id);
    };
    const openRun = (runId: string) =>
      addMain(`mlnb-run-${runId}`, () => {
        const content = new RunDetails(runId, {
          openOutput: (id, name) => void openOutput(app, id, name)
        });
        const widget = new MainAreaWidget({ content });
        widget.title.label = content.title.label;
        content.title.changed.connect(() => {
          widget.title.label = content.title.label;
          widget.title.caption = content.title.caption;
        });
        widget.title.icon = ICON;
        return widget;
      });
    const compare = (runIds: string[]) =>
      addMain(`mlnb-compare-${runIds.join('-')}`, () => {
        const widget = new MainAreaWidget({ content: new CompareView(runIds) });
        widget.title.label = `Compare ${runIds.length} runs`;
        widget.title.icon = ICON;
        return widget;
      });

    const panel = new RunsPanel({ openRun, compare, currentNotebook });
    panel.title.icon = ICON;
    app.shell.add(panel, 'left', { rank: 650 });
    tracker?.currentChanged.connect(() => panel.notebookChanged());

    app.commands.addCommand(COMMANDS.openRuns, {
      label: 'mlnb: Show Runs',
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(COMMANDS.openRun, {
      label: 'mlnb: Open Run',
      execute: args => openRun(String(args.runId))
    });
    app.commands.addCommand(COMMANDS.compare, {
      label: 'mlnb: Compare Runs',
      execute: args => compare(String(args.runIds).split(','))
    });
    app.commands.addCommand(COMMANDS.runWithParameters, {
      label: 'Run with parameters…',
      caption: 'Run this notebook headless with other parameter values (an mlnb job)',
      icon: ICON,
      isEnabled: () => !!tracker?.currentWidget,
      execute: async args => {
        const path = (args.path as string) || currentNotebook();
        if (!path) {
          return;
        }
        try {
          const current = tracker?.currentWidget;
          if (current && current.context.path === path && current.context.model.dirty) {
            await current.context.save();
          }
          const job = await runWithParameters(path);
          if (job) {
            panel.trackJob({
              job_id: job.job_id,
              path,
              status: job.status,
              run_id: null,
              cells_done: 0,
              cells_total: 0,
              current_cell: null,
              error: null,
              output_path: null
            });
            app.shell.activateById(panel.id);
          }
        } catch (error) {
          Notification.error(`Run with parameters: ${(error as Error).message}`, { autoClose: false });
        }
      }
    });
    if (palette) {
      for (const command of [COMMANDS.openRuns, COMMANDS.runWithParameters]) {
        palette.addItem({ command, category: 'mlnb' });
      }
    }
    // Only where notebooks open: on Notebook 7's other pages (the file browser: `tree`) a
    // notebook toolbar extension makes Notebook's toolbar settings fail. JupyterLab sets no
    // `notebookPage`.
    const page = PageConfig.getOption('notebookPage');
    if (tracker && (page === '' || page === 'notebooks')) {
      app.docRegistry.addWidgetExtension('Notebook', {
        createNew: (nb: NotebookPanel) => {
          const button = new ToolbarButton({
            className: 'mlnb-run-with-parameters',
            icon: ICON,
            label: 'Run with parameters…',
            tooltip: 'Run this notebook headless with other parameter values (an mlnb job)',
            onClick: () =>
              void app.commands.execute(COMMANDS.runWithParameters, { path: nb.context.path })
          });
          nb.toolbar.insertItem(10, 'mlnbRunWithParameters', button);
          return button;
        }
      });
    }

    void handshake(panel);
  }
};

const OUTPUTS_DIR = 'mlnb-outputs';

/** A run's executed notebook is an artifact in the store: copy it once into
 * `mlnb-outputs/` under the server root (`<run id>-<name>`), then open that copy. */
async function openOutput(app: JupyterFrontEnd, runId: string, name: string): Promise<void> {
  const contents = app.serviceManager.contents;
  const base = name.split('/').pop() || 'output.ipynb';
  const path = `${OUTPUTS_DIR}/${runId.slice(0, 8)}-${base}`;
  try {
    // no probing by 404: make sure of the folder (PUT is idempotent), then list it
    await contents.save(OUTPUTS_DIR, { type: 'directory' });
    const listing = await contents.get(OUTPUTS_DIR, { content: true });
    const present = (listing.content as { path: string }[]).some(item => item.path === path);
    if (!present) {
      const notebook = await requestAPI<unknown>(
        `artifacts/${encodeURIComponent(runId)}/${name.split('/').map(encodeURIComponent).join('/')}`
      );
      await contents.save(path, { type: 'notebook', format: 'json', content: notebook });
    }
    await app.commands.execute('docmanager:open', { path });
  } catch (error) {
    Notification.error(`Cannot open the output notebook ${name}: ${(error as Error).message}`, {
      autoClose: false
    });
  }
}

/** GET version: on a mismatch (or no server extension) say what to run. */
async function handshake(panel: RunsPanel): Promise<void> {
  let message: string | null;
  try {
    const info = await requestAPI<VersionInfo>('version');
    message = mismatchMessage(info.version);
  } catch (error) {
    message =
      error instanceof ApiError && (error.status === 404 || error.status === 0)
        ? `mlnb's server extension does not answer (the JupyterLab extension is ${FRONTEND_VERSION}): ` +
          'run `pip install -U mlnb` and restart the Jupyter server.'
        : `mlnb's server extension failed: ${(error as Error).message}`;
  }
  if (message) {
    panel.showWarning(message);
    Notification.warning(message, { autoClose: false });
    console.warn(message);
  }
}

export default plugin;
