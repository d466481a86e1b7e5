// Renders the columns and cards from the live task map, filtered on the client.

import { h } from "./dom";
import { COLUMNS, PRIORITY_NAMES, dueToInput, isOverdue } from "./format";
import type { Task, TaskStatus } from "./gen/taskservice/task_service_pb";

export interface Filters {
  projectId: string; // "" for every task the caller may see
  q: string;
  priority: number;
  label: string;
  assignee: string;
}

export interface CardActions {
  edit(task: Task): void;
  move(task: Task, status: TaskStatus): void;
  addSubtask(parent: Task): void;
}

export function matches(task: Task, f: Filters): boolean {
  const q = f.q.toLowerCase();
  return (
    (!f.projectId || task.projectId === f.projectId) &&
    (!q || task.title.toLowerCase().includes(q) || task.description.toLowerCase().includes(q)) &&
    (!f.priority || task.priority === f.priority) &&
    (!f.label || task.labels.some((l) => l.toLowerCase() === f.label.toLowerCase())) &&
    (!f.assignee || task.assignedTo.toLowerCase().includes(f.assignee.toLowerCase()))
  );
}

function byPriorityThenAge(a: Task, b: Task): number {
  return b.priority - a.priority || Number((a.createdAt?.seconds ?? 0n) - (b.createdAt?.seconds ?? 0n));
}

/** A card's subtasks: each with its status and an edit button (they may sit in another column). */
function subtaskList(children: Task[], actions: CardActions): HTMLElement | null {
  if (!children.length) return null;
  return h(
    "ul",
    { class: "subtasks", "aria-label": "Subtasks", "data-testid": "subtasks" },
    ...children.map((child) => {
      const edit = h("button", { type: "button", class: "link", "aria-label": `Edit ${child.title}` }, "Edit");
      edit.addEventListener("click", () => actions.edit(child));
      const status = COLUMNS.find(([s]) => s === child.status)?.[1] ?? "";
      return h(
        "li",
        { "data-testid": "subtask", "data-task-id": child.id },
        h("span", { class: "subtask-title" }, child.title),
        " ",
        h("span", { class: "badge" }, status),
        " ",
        edit,
      );
    }),
  );
}

function card(task: Task, actions: CardActions, children: Task[] = []): HTMLElement {
  const titleId = `task-${task.id}-title`;
  const move = h(
    "select",
    { "aria-label": `Status of ${task.title}`, "data-focus-key": `move-${task.id}`, "data-testid": "task-status" },
    ...COLUMNS.map(([status, name]) =>
      h("option", { value: String(status), selected: status === task.status }, name),
    ),
  );
  move.addEventListener("change", () => actions.move(task, Number(move.value) as TaskStatus));
  const edit = h(
    "button",
    { type: "button", "data-focus-key": `edit-${task.id}`, "data-testid": "task-edit", "aria-describedby": titleId },
    "Edit",
  );
  edit.addEventListener("click", () => actions.edit(task));
  const subtask = h(
    "button",
    { type: "button", class: "link", "data-testid": "task-add-subtask", "aria-describedby": titleId },
    "+ Subtask",
  );
  subtask.addEventListener("click", () => actions.addSubtask(task));
  const due = dueToInput(task);
  return h(
    "article",
    {
      class: `card priority-${task.priority}`,
      "data-testid": "task-card",
      "data-task-id": task.id,
      "aria-labelledby": titleId,
    },
    h("h3", { id: titleId, class: "card-title" }, task.title),
    task.description ? h("p", { class: "description" }, task.description) : null,
    h(
      "p",
      { class: "meta" },
      h("span", { class: "badge priority" }, PRIORITY_NAMES[task.priority] ?? "Medium"),
      task.assignedTo ? h("span", { class: "assignee", title: "Assignee" }, `@${task.assignedTo}`) : null,
      due ? h("span", { class: isOverdue(task) ? "due overdue" : "due" }, `due ${due}`) : null,
    ),
    task.labels.length
      ? h("ul", { class: "labels", "aria-label": "Labels" }, ...task.labels.map((l) => h("li", {}, l)))
      : null,
    subtaskList(children, actions),
    h("div", { class: "card-actions" }, move, edit, subtask),
  );
}

export function renderBoard(
  root: HTMLElement,
  tasks: Iterable<Task>,
  filters: Filters,
  actions: CardActions,
): void {
  const focusKey = (document.activeElement as HTMLElement | null)?.dataset?.focusKey;
  const shown = [...tasks].filter((t) => matches(t, filters)).sort(byPriorityThenAge);
  // A subtask whose parent is on the board is listed under the parent's card, not as a card.
  const ids = new Set(shown.map((t) => t.id));
  const children = new Map<string, Task[]>();
  for (const task of shown) {
    if (task.parentId && ids.has(task.parentId)) {
      children.set(task.parentId, [...(children.get(task.parentId) ?? []), task]);
    }
  }
  const cards = shown.filter((t) => !(t.parentId && ids.has(t.parentId)));
  root.replaceChildren(
    ...COLUMNS.map(([status, name]) => {
      const inColumn = cards.filter((t) => t.status === status);
      const headingId = `column-${status}`;
      return h(
        "section",
        { class: "column", "aria-labelledby": headingId, "data-status": String(status) },
        h("h2", { id: headingId }, name, " ", h("span", { class: "count" }, `(${inColumn.length})`)),
        inColumn.length
          ? h("div", { class: "cards" }, ...inColumn.map((t) => card(t, actions, children.get(t.id))))
          : h("p", { class: "empty" }, "Nothing here."),
      );
    }),
  );
  if (focusKey) root.querySelector<HTMLElement>(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
}
