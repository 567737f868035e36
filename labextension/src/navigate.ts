/** Move the user to a notebook cell (from a validation error, a failed stage or a DAG node). */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { NotebookPanel } from '@jupyterlab/notebook';

/** Select and scroll to cell `index` of an open notebook. */
export function selectCell(
  app: JupyterFrontEnd,
  panel: NotebookPanel,
  index: number
): void {
  const notebook = panel.content;
  if (index < 0 || index >= notebook.widgets.length) {
    return;
  }
  app.shell.activateById(panel.id);
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  notebook.mode = 'command';
  void notebook.scrollToCell(notebook.widgets[index], 'center');
  notebook.activeCell?.node.focus();
}

/** Open (or reveal) the notebook at `path` (relative to the server root) and select a cell. */
export async function openCell(
  app: JupyterFrontEnd,
  path: string,
  index: number | null
): Promise<void> {
  const widget = await app.commands.execute('docmanager:open', { path });
  if (!(widget instanceof NotebookPanel)) {
    return;
  }
  await widget.context.ready;
  await widget.revealed;
  if (index !== null && index !== undefined) {
    selectCell(app, widget, index);
  }
}
