// A task's history in the editor: ListTaskEvents, oldest first, one line per event (when, who, what
// changed), a page at a time with "Show more" for a long one.

import { ConnectError } from "@connectrpc/connect";
import type { TaskClient } from "./api";
import { h } from "./dom";
import { EventType, type TaskEvent } from "./gen/taskservice/task_service_pb";

const PAGE_SIZE = 50;

/** What a field path of `changed_paths` is called on the board. */
const FIELD_NAMES: Record<string, string> = {
  assigned_to: "assignee",
  due_date: "due date",
  parent_id: "parent",
  project_id: "project",
};

function what(event: TaskEvent): string {
  switch (event.eventType) {
    case EventType.CREATED:
      return "Created";
    case EventType.DELETED:
      return "Moved to the trash";
    case EventType.UPDATED: {
      const paths = event.changedPaths?.paths ?? [];
      return paths.length ? `Changed ${paths.map((p) => FIELD_NAMES[p] ?? p.replaceAll("_", " ")).join(", ")}` : "Changed";
    }
    default:
      return "Changed";
  }
}

function entry(event: TaskEvent): HTMLElement {
  const at = event.timestamp ? new Date(Number(event.timestamp.seconds) * 1000 + event.timestamp.nanos / 1e6) : null;
  return h(
    "li",
    { "data-testid": "history-entry", "data-event-type": EventType[event.eventType] },
    h("span", { class: "history-what" }, what(event)),
    event.triggeredBy ? h("span", { class: "history-who" }, ` by ${event.triggeredBy}`) : null,
    at ? h("time", { datetime: at.toISOString(), class: "history-when" }, at.toLocaleString()) : null,
  );
}

/** The editor's history panel: a list, a status line for screen readers and a "Show more" button. */
export class TaskHistory {
  private taskId = "";
  private nextToken = "";
  private ticket = 0;
  private readonly list: HTMLOListElement;
  private readonly status: HTMLElement;
  private readonly more: HTMLButtonElement;

  constructor(
    private readonly client: TaskClient,
    panel: HTMLElement,
  ) {
    this.list = panel.querySelector("ol")!;
    this.status = panel.querySelector(".history-status")!;
    this.more = panel.querySelector("button")!;
    this.more.addEventListener("click", () => void this.load());
  }

  /** Show the history of task `id` from its start. */
  show(id: string): void {
    this.taskId = id;
    this.nextToken = "";
    this.list.replaceChildren();
    void this.load();
  }

  private async load(): Promise<void> {
    const ticket = ++this.ticket;
    this.more.hidden = true;
    this.status.textContent = "Loading history…";
    try {
      const page = await this.client.listTaskEvents({
        taskId: this.taskId,
        pageSize: PAGE_SIZE,
        pageToken: this.nextToken,
      });
      if (ticket !== this.ticket) return; // another task was opened meanwhile
      this.list.append(...page.events.map(entry));
      this.nextToken = page.nextPageToken;
      this.more.hidden = !this.nextToken;
      const count = this.list.childElementCount;
      this.status.textContent = `${count} ${count === 1 ? "event" : "events"}${this.nextToken ? ", more to show" : ""}`;
    } catch (error) {
      if (ticket !== this.ticket) return;
      this.status.textContent = `History unavailable: ${ConnectError.from(error).rawMessage}`;
      this.more.hidden = !this.nextToken;
    }
  }
}
