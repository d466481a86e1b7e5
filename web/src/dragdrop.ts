// Drag and drop between columns with SortableJS. Each column's row container is a Sortable in one
// group; order inside a column is the server's (newest first), so only the column a card lands in
// matters. The virtual lists stop redrawing while a card is dragged, and the board redraws from its
// own state afterwards, so SortableJS's moving of DOM nodes never becomes the truth.

import Sortable from "sortablejs";
import type { Column } from "./column";
import type { TaskStatus } from "./gen/taskservice/task_service_pb";

export type Drop = (taskId: string, from: Column, to: TaskStatus) => void;

export function enableDragAndDrop(columns: readonly Column[], drop: Drop): () => void {
  const byRows = new Map(columns.map((column) => [column.list.rows, column]));
  const sortables = columns.map((column) =>
    Sortable.create(column.list.rows, {
      group: "board",
      sort: false,
      draggable: ".card",
      // Controls inside a card keep their own pointer behaviour (menus, buttons).
      filter: "select, button, input, textarea",
      preventOnFilter: false,
      forceFallback: true, // pointer events, not native DnD: the same on touch screens and in tests
      fallbackOnBody: true,
      animation: 0,
      onStart: () => columns.forEach((c) => c.list.freeze()),
      onEnd: (event) => {
        const item = event.item;
        const to = byRows.get(event.to as HTMLElement);
        // Undo SortableJS's DOM move: the lists redraw from the board's state below.
        if (event.from !== event.to) event.from.append(item);
        columns.forEach((c) => c.list.thaw());
        const id = item.dataset.taskId;
        if (id && to && event.from !== event.to) drop(id, column, to.status);
      },
    }),
  );
  return () => sortables.forEach((s) => s.destroy());
}
