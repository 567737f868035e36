/**
 * nb2prod for JupyterLab: the Productionize and Schedule… commands (toolbar, palette, context menu), the
 * Pipelines side panel (schedules and runs), "Mark as stage…" and stage badges. All pipeline logic stays on
 * the server (REST).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, InputDialog, showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { productionize } from './dialog';
import { postAPI } from './handler';
import { openCell } from './navigate';
import { PipelinesPanel } from './panel';
import { scheduleNotebook } from './schedule';
import { STAGE_NAME, setStage, stageOf, trackBadges } from './stages';
import { DEFAULT_SETTINGS, ISettings, ISpec } from './types';

const PLUGIN_ID = 'nb2prod:plugin';

export namespace CommandIDs {
  export const productionize = 'nb2prod:productionize';
  export const schedule = 'nb2prod:schedule';
  export const markStage = 'nb2prod:mark-stage';
  export const showPipelines = 'nb2prod:show-pipelines';
}

export const pipelineIcon = new LabIcon({
  name: 'nb2prod:pipeline',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="3" width="7" height="5" rx="1"/><rect x="15" y="3" width="7" height="5" rx="1"/>' +
    '<rect x="8.5" y="16" width="7" height="5" rx="1"/>' +
    '<path d="M5 8h1.5v3.5h11V8H19v5h-6.25v3h-1.5v-3H5z"/></g></svg>'
});

export const stageIcon = new LabIcon({
  name: 'nb2prod:stage',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M4 4h10l6 8-6 8H4l5-8z"/></svg>'
});

export const scheduleIcon = new LabIcon({
  name: 'nb2prod:schedule',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 ' +
    '0-16zm-1 3v6l5 3 1-1.7-4-2.3V7z"/></svg>'
});

function checkNotebook(path: string): Promise<ISpec> {
  return postAPI<ISpec>('check', { path });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Productionize a notebook into a Ray + MLflow pipeline with nb2prod.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    registry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    let settings: ISettings = { ...DEFAULT_SETTINGS };
    if (registry) {
      void registry
        .load(PLUGIN_ID)
        .then(loaded => {
          const read = () => {
            settings = { ...DEFAULT_SETTINGS, ...(loaded.composite as Partial<ISettings>) };
          };
          read();
          loaded.changed.connect(read);
        })
        .catch(reason => console.error('nb2prod: cannot load settings', reason));
    }

    const panel = new PipelinesPanel({
      settings: () => settings,
      openCell: (path, index) => void openCell(app, path, index)
    });
    panel.title.icon = pipelineIcon;
    app.shell.add(panel, 'right', { rank: 650 });
    restorer?.add(panel, 'nb2prod-pipelines');

    const current = (args: Record<string, unknown>): NotebookPanel | null => {
      const widget = tracker.currentWidget;
      if (widget && args.activate !== false) {
        app.shell.activateById(widget.id);
      }
      return widget;
    };

    app.commands.addCommand(CommandIDs.productionize, {
      label: args => (args.toolbar ? 'Productionize' : 'Productionize Notebook…'),
      caption: 'Save, check and run this notebook as a pipeline on Ray, tracked in MLflow',
      icon: pipelineIcon,
      isEnabled: () => tracker.currentWidget !== null,
      execute: async args => {
        const notebook = current(args);
        if (!notebook) {
          return;
        }
        await productionize({
          app,
          panel: notebook,
          settings: () => settings,
          check: checkNotebook,
          onStarted: runId => {
            app.shell.activateById(panel.id);
            panel.select(runId);
          }
        });
      }
    });

    app.commands.addCommand(CommandIDs.schedule, {
      label: args => (args.toolbar ? 'Schedule…' : 'Schedule Notebook…'),
      caption: 'Run this notebook on a cron schedule (as a pipeline or with papermill), tracked in MLflow',
      icon: scheduleIcon,
      isEnabled: () => tracker.currentWidget !== null,
      execute: async args => {
        const notebook = current(args);
        if (!notebook) {
          return;
        }
        await scheduleNotebook({
          panel: notebook,
          settings: () => settings,
          check: checkNotebook,
          onAdded: () => {
            app.shell.activateById(panel.id);
            void panel.refresh();
          }
        });
      }
    });

    app.commands.addCommand(CommandIDs.markStage, {
      label: 'Mark as Stage…',
      caption: 'Tag the selected cells as one pipeline stage (stage:NAME)',
      icon: stageIcon,
      isEnabled: () => tracker.activeCell !== null,
      execute: async args => {
        const notebook = current(args);
        const active = notebook?.content.activeCell;
        if (!notebook || !active) {
          return;
        }
        const cells = notebook.content.widgets.filter(
          c => c === active || notebook.content.isSelected(c)
        );
        const result = await InputDialog.getText({
          title: 'Mark as stage',
          label: `Stage name for ${cells.length} cell${cells.length === 1 ? '' : 's'} (empty removes the tag)`,
          text: stageOf(active.model) ?? '',
          placeholder: 'e.g. train'
        });
        if (!result.button.accept || result.value === null) {
          return;
        }
        const name = result.value.trim();
        if (name && !STAGE_NAME.test(name)) {
          await showErrorMessage(
            'Invalid stage name',
            `"${name}" is not a stage name: use letters, digits, "_" and "-".`
          );
          return;
        }
        for (const cell of cells) {
          setStage(cell.model, name);
        }
      }
    });

    app.commands.addCommand(CommandIDs.showPipelines, {
      label: 'Show Pipelines Panel',
      caption: 'Recent nb2prod runs with live stage status',
      icon: pipelineIcon,
      execute: () => app.shell.activateById(panel.id)
    });

    if (palette) {
      const category = 'nb2prod';
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category });
      }
    }

    tracker.widgetAdded.connect((_, notebook) => trackBadges(notebook));
    tracker.forEach(notebook => trackBadges(notebook));
  }
};

export default plugin;
