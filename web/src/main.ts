// The task board's page: wires the session, the board's columns, the forms and the editor together.

import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { requestId, taskClient } from "./api";
import { Board } from "./board";
import { byId } from "./dom";
import { type Filters, readFilters } from "./filters";
import { dueFromInput, dueToInput, splitLabels } from "./format";
import { TaskHistory } from "./history";
import {
  CreateTaskRequestSchema,
  UpdateTaskRequestSchema,
  type Priority,
  type Task,
  type TaskStatus,
} from "./gen/taskservice/task_service_pb";
import type { ConnectionState } from "./live";
import { startMetricsPanel } from "./metrics";
import { Projects } from "./projects";
import { startWebhooksPanel } from "./webhooks";
import { adoptTokenFromLocation, clearToken, identity, setToken, token } from "./session";
import "./style.css";

const STATE_TEXT: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  "signed-out": "Signed out",
};

const client = taskClient();
const columns = byId("columns");
const notice = byId("notice");
const connection = byId("connection");
const newTask = byId<HTMLFormElement>("new-task");
const filterForm = byId<HTMLFormElement>("filters");
const editor = byId<HTMLDialogElement>("editor");
const editForm = byId<HTMLFormElement>("edit-form");
const signIn = byId("sign-in");
const searchError = byId("search-error");
const history = new TaskHistory(client, byId("editor").querySelector<HTMLElement>(".history")!);
let board: Board | null = null;
const projects = new Projects(client, projectChanged, say);
let editing: Task | null = null;
let filterTimer: number | undefined;

function field(form: HTMLFormElement, name: string): HTMLInputElement {
  return form.elements.namedItem(name) as HTMLInputElement;
}

function say(message: string): void {
  notice.textContent = message;
  notice.hidden = !message;
}

/** The server's answer to the search box: its message when it refused the search ("" when not). */
function searchRefused(message: string): void {
  searchError.textContent = message ? `Search not applied: ${message}` : "";
  field(filterForm, "q").setAttribute("aria-invalid", String(message !== ""));
}

function explain(error: unknown): string {
  const err = ConnectError.from(error);
  if (err.code === Code.Aborted) return "Someone else changed this task first; the editor now shows their version.";
  if (err.code === Code.Unauthenticated) return "Your sign-in is missing or has expired.";
  return err.rawMessage || "The request failed.";
}

function showState(state: ConnectionState, detail?: string): void {
  connection.dataset.state = state;
  connection.textContent = STATE_TEXT[state];
  connection.title = detail ?? "";
  if (state === "signed-out") {
    signIn.hidden = false;
    if (detail) say(detail);
  }
}

function openEditor(task: Task): void {
  editing = task;
  field(editForm, "title").value = task.title;
  (editForm.elements.namedItem("description") as HTMLTextAreaElement).value = task.description;
  field(editForm, "status").value = String(task.status);
  field(editForm, "priority").value = String(task.priority || 2);
  field(editForm, "labels").value = task.labels.join(", ");
  field(editForm, "assignee").value = task.assignedTo;
  field(editForm, "due").value = dueToInput(task);
  editForm.querySelector(".editor-error")!.textContent = "";
  history.show(task.id);
  if (!editor.open) editor.showModal();
}

async function saveEdit(): Promise<void> {
  if (!editing) return;
  const due = dueFromInput(field(editForm, "due").value);
  const request = create(UpdateTaskRequestSchema, {
    id: editing.id,
    title: field(editForm, "title").value.trim(),
    description: (editForm.elements.namedItem("description") as HTMLTextAreaElement).value,
    status: Number(field(editForm, "status").value) as TaskStatus,
    priority: Number(field(editForm, "priority").value) as Priority,
    labels: splitLabels(field(editForm, "labels").value),
    assignedTo: field(editForm, "assignee").value.trim(),
    dueDate: due,
    expectedVersion: editing.version,
    // Name every edited field so clearing labels or the due date clears them on the server.
    updateMask: create(FieldMaskSchema, {
      paths: ["title", "description", "status", "priority", "labels", "assigned_to", "due_date"],
    }),
  });
  try {
    board?.applyLocal(await client.updateTask(request));
    editor.close();
  } catch (error) {
    const latest = board?.find(editing.id);
    // On a version conflict, show the newer version the live view already has, then say why.
    if (ConnectError.from(error).code === Code.Aborted && latest) openEditor(latest);
    editForm.querySelector(".editor-error")!.textContent = explain(error);
  }
}

async function deleteEditing(): Promise<void> {
  if (!editing) return;
  try {
    await client.deleteTask({ id: editing.id, expectedVersion: editing.version });
    editor.close();
  } catch (error) {
    editForm.querySelector(".editor-error")!.textContent = explain(error);
  }
}

async function submitNewTask(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const submit = newTask.querySelector<HTMLButtonElement>("button[type=submit]")!;
  submit.disabled = true;
  try {
    const task = await client.createTask(
      create(CreateTaskRequestSchema, {
        title: field(newTask, "title").value.trim(),
        priority: Number(field(newTask, "priority").value) as Priority,
        labels: splitLabels(field(newTask, "labels").value),
        assignedTo: field(newTask, "assignee").value.trim(),
        dueDate: dueFromInput(field(newTask, "due").value),
        projectId: projects.current,
        requestId: requestId(),
      }),
    );
    board?.applyLocal(task);
    newTask.reset();
    say("");
    field(newTask, "title").focus();
  } catch (error) {
    say(explain(error));
  } finally {
    submit.disabled = false;
  }
}

/** What the board should show: the filter form under the chosen project. */
function wanted(): Filters {
  return readFilters(filterForm, projects.current);
}

/** The project list was re-read or another project chosen: re-query when the choice changed. */
function projectChanged(): void {
  if (board && board.shown.projectId !== projects.current) void board.show(wanted());
}

async function addSubtask(parent: Task): Promise<void> {
  const title = window.prompt(`New subtask of "${parent.title}"`)?.trim();
  if (!title) return;
  try {
    const task = await client.createTask(
      create(CreateTaskRequestSchema, {
        title,
        projectId: parent.projectId,
        parentId: parent.id,
        requestId: requestId(),
      }),
    );
    board?.applyLocal(task);
  } catch (error) {
    say(explain(error));
  }
}

function startBoard(): void {
  board?.stop();
  signIn.hidden = true;
  const me = identity();
  byId("who").textContent = me ? `Signed in as ${me.userId}${me.isAdmin ? " (admin)" : ""}` : "";
  byId("sign-out").hidden = !token();
  board = new Board(columns, client, {
    state: showState,
    say,
    edit: openEditor,
    addSubtask: (parent) => void addSubtask(parent),
    changed: () => projects.refreshSoon(), // a task of a project this board does not list yet
    refused: searchRefused,
  });
  showState("connecting");
  projects.start();
  void board.show(wanted());
}

/** Filters re-query every column through the same path as the first load (debounced while typing). */
function refilter(): void {
  window.clearTimeout(filterTimer);
  filterTimer = window.setTimeout(() => void board?.show(wanted()), 250);
}

function main(): void {
  adoptTokenFromLocation();
  newTask.addEventListener("submit", (e) => void submitNewTask(e));
  filterForm.addEventListener("input", refilter);
  filterForm.addEventListener("submit", (e) => e.preventDefault());
  editForm.addEventListener("submit", (e) => {
    e.preventDefault();
    void saveEdit();
  });
  editForm.querySelector('[value="delete"]')!.addEventListener("click", () => void deleteEditing());
  editForm.querySelector('[value="cancel"]')!.addEventListener("click", () => editor.close());
  byId<HTMLFormElement>("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setToken(byId<HTMLInputElement>("token-input").value);
    say("");
    startBoard();
  });
  byId("sign-out").addEventListener("click", () => {
    clearToken();
    projects.stop();
    board?.stop();
    board = null;
    columns.replaceChildren();
    showState("signed-out");
    byId("who").textContent = "";
    byId("sign-out").hidden = true;
  });
  startMetricsPanel(byId<HTMLDetailsElement>("metrics"), byId("metrics-body"));
  startWebhooksPanel(byId<HTMLDetailsElement>("webhooks"), byId("webhooks-body"));
  startBoard();
}

main();
