// One task card: its fields, its subtasks, a status menu and the keyboard moves (Shift+Arrow to the
// next column).

import { h } from "./dom";
import { COLUMNS, PRIORITY_NAMES, dueToInput, isOverdue } from "./format";
import type { Task, TaskStatus } from "./gen/taskservice/task_service_pb";

export interface CardActions {
  edit(task: Task): void;
  move(task: Task, status: TaskStatus): void;
  addSubtask(parent: Task): void;
}

/** A card's subtasks: each with its status and an edit button (they may sit in another column). */
function subtaskList(children: readonly Task[], actions: CardActions): HTMLElement | null {
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

/** The column `step` places left (-1) or right (+1) of `status`, or null at either end. */
export function neighbour(status: TaskStatus, step: number): TaskStatus | null {
  const index = COLUMNS.findIndex(([s]) => s === status) + step;
  return index >= 0 && index < COLUMNS.length ? COLUMNS[index][0] : null;
}

export function card(
  task: Task,
  actions: CardActions,
  pending = false,
  children: readonly Task[] = [],
): HTMLElement {
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
  const element = h(
    "article",
    {
      class: `card priority-${task.priority}${pending ? " pending" : ""}`,
      "data-testid": "task-card",
      "data-task-id": task.id,
      "data-focus-key": `card-${task.id}`,
      "aria-labelledby": titleId,
      "aria-keyshortcuts": "Shift+ArrowLeft Shift+ArrowRight",
      "aria-busy": pending ? "true" : undefined,
      tabindex: "0",
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
  element.addEventListener("keydown", (event) => {
    if (event.target !== element || !event.shiftKey) return;
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    const target = step ? neighbour(task.status, step) : null;
    if (target === null) return;
    event.preventDefault();
    actions.move(task, target);
  });
  return element;
}
