// The task board: wires the session, the live task map, the forms and the rendering together.

import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { requestId, taskClient } from "./api";
import { renderBoard, type Filters } from "./board";
import { byId } from "./dom";
import { dueFromInput, dueToInput, splitLabels } from "./format";
import {
  CreateTaskRequestSchema,
  UpdateTaskRequestSchema,
  type Priority,
  type Task,
  type TaskStatus,
} from "./gen/taskservice/task_service_pb";
import { LiveTasks, type ConnectionState } from "./live";
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
let live: LiveTasks | null = null;
const projects = new Projects(client, render, say);
let editing: Task | null = null;
let renderPending = false;

function field(form: HTMLFormElement, name: string): HTMLInputElement {
  return form.elements.namedItem(name) as HTMLInputElement;
}

function filters(): Filters {
  return {
    projectId: projects.current,
    q: field(filterForm, "q").value.trim(),
    priority: Number(field(filterForm, "priority").value) || 0,
    label: field(filterForm, "label").value.trim(),
    assignee: field(filterForm, "assignee").value.trim(),
  };
}

function render(): void {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderBoard(columns, live?.tasks.values() ?? [], filters(), { edit: openEditor, move, addSubtask });
  });
}

function say(message: string): void {
  notice.textContent = message;
  notice.hidden = !message;
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

function visible(task: Task): boolean {
  const me = identity();
  if (!me) return true; // no token: the server runs with --auth none and everyone is admin
  // A project's task is sent only to its members (and assignee); the server sends DELETED when
  // it leaves the user's sight, so only personal tasks are checked here.
  if (task.projectId) return true;
  return me.isAdmin || task.createdBy === me.userId || task.assignedTo === me.userId;
}

function changed(): void {
  render();
  projects.refreshSoon(); // a task of a project this board does not list yet: shared with us?
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
    live?.applyLocal(task);
  } catch (error) {
    say(explain(error));
  }
}

async function move(task: Task, status: TaskStatus): Promise<void> {
  try {
    const updated = await client.updateTask({ id: task.id, status, expectedVersion: task.version });
    live?.applyLocal(updated);
  } catch (error) {
    say(explain(error));
    render();
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
    live?.applyLocal(await client.updateTask(request));
    editor.close();
  } catch (error) {
    const latest = live?.tasks.get(editing.id);
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
    live?.applyLocal(task);
    newTask.reset();
    say("");
    field(newTask, "title").focus();
  } catch (error) {
    say(explain(error));
  } finally {
    submit.disabled = false;
  }
}

function startLive(): void {
  live?.stop();
  signIn.hidden = true;
  const me = identity();
  byId("who").textContent = me ? `Signed in as ${me.userId}${me.isAdmin ? " (admin)" : ""}` : "";
  byId("sign-out").hidden = !token();
  live = new LiveTasks(client, { changed, state: showState, visible });
  render();
  projects.start();
  void live.run();
}

function main(): void {
  adoptTokenFromLocation();
  newTask.addEventListener("submit", (e) => void submitNewTask(e));
  filterForm.addEventListener("input", render);
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
    startLive();
  });
  byId("sign-out").addEventListener("click", () => {
    clearToken();
    projects.stop();
    live?.stop();
    live = null;
    render();
    showState("signed-out");
    byId("who").textContent = "";
    byId("sign-out").hidden = true;
  });
  startMetricsPanel(byId<HTMLDetailsElement>("metrics"), byId("metrics-body"));
  startWebhooksPanel(byId<HTMLDetailsElement>("webhooks"), byId("webhooks-body"));
  startLive();
}

main();
