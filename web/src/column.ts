// One board column: a ListTasks page of its status, more pages on scroll, and live events applied
// to what is loaded. Its count is the server's total_count, kept exact from events; when an event
// cannot tell whether a task was in the column before (an update to a task beyond the loaded
// pages), the column asks the server again and adds the certain changes that came after.

import type { TaskClient } from "./api";
import { card, type CardActions } from "./card";
import { h } from "./dom";
import { type Filters, compareTasks, listRequest, matches } from "./filters";
import { EventType, type Task, type TaskEvent, type TaskStatus } from "./gen/taskservice/task_service_pb";
import { VirtualList } from "./virtual-list";

export const FIRST_PAGE = 50;
const NEXT_PAGE = 100;
const RECOUNT_AFTER_MS = 300;
const RECENT_MAX = 2000;

/** What a column asks of the board it is on. */
export interface ColumnBoard {
  /** Apply the recent events after `after` to the tasks `ids` that a later page just brought. */
  replay(column: Column, after: bigint, ids: Set<string>): void;
  /** The loaded subtasks of `task`, shown on its card. */
  children(task: Task): readonly Task[];
  /** A subtask whose parent is loaded on the board is shown on the parent's card, not as a card. */
  underParent(task: Task): boolean;
}

/** A count change an event caused: a number, or null when it cannot be known without asking. */
type Delta = number | null;

export class Column {
  readonly element: HTMLElement;
  readonly list: VirtualList<Task>;
  /** The sequence the first page reflects: events up to it are already in the page. */
  sequence = -1n;
  private tasks: Task[] = [];
  private total = 0;
  private nextToken = "";
  /** The last task the pages loaded so far reach (the keyset position of `nextToken`). */
  private rangeEnd: Task | null = null;
  private filters: Filters = { projectId: "", priority: 0, label: "", assignee: "" };
  private loading: Promise<void> | null = null;
  private generation = 0;
  private pending = new Set<string>();
  private countAsOf = -1n;
  private recent: Array<{ sequence: bigint; delta: Delta }> = [];
  private recountTimer: number | undefined;
  private readonly countText: HTMLElement;
  private readonly empty: HTMLElement;

  constructor(
    readonly status: TaskStatus,
    readonly name: string,
    private readonly client: TaskClient,
    private readonly actions: CardActions,
    private readonly board: ColumnBoard,
  ) {
    const headingId = `column-${status}`;
    this.countText = h("span", { class: "count", "data-testid": "column-count" }, "(…)");
    this.empty = h("p", { class: "empty" }, "Nothing here.");
    this.empty.hidden = true;
    const scroller = h("div", {
      class: "cards",
      tabindex: "0",
      role: "region",
      "aria-label": `${name} cards`,
      "data-testid": "column-cards",
    });
    this.element = h(
      "section",
      { class: "column", "aria-labelledby": headingId, "data-status": String(status), "aria-busy": "true" },
      h("h2", { id: headingId }, name, " ", this.countText),
      this.empty,
      scroller,
    );
    this.list = new VirtualList<Task>(scroller, {
      key: (task) => task.id,
      row: (task) => card(task, this.actions, this.pending.has(task.id), this.board.children(task)),
      signature: (task) =>
        this.board
          .children(task)
          .map((child) => `${child.id}:${child.version}:${child.status}`)
          .join(),
      nearEnd: () => void this.loadMore(),
      estimateSize: 150,
      gap: 10,
    });
  }

  /** Stop for good: pending answers are ignored, the list lets go of its observers. */
  destroy(): void {
    this.generation++;
    window.clearTimeout(this.recountTimer);
    this.list.destroy();
  }

  get loaded(): readonly Task[] {
    return this.tasks;
  }

  find(id: string): Task | undefined {
    return this.tasks.find((task) => task.id === id);
  }

  /** Load the first page under `filters`, replacing everything loaded before. */
  async load(filters: Filters): Promise<void> {
    const generation = ++this.generation;
    this.filters = filters;
    this.element.setAttribute("aria-busy", "true");
    const page = await this.client.listTasks(listRequest(filters, this.status, FIRST_PAGE));
    if (generation !== this.generation) return;
    this.sequence = this.countAsOf = page.sequence;
    this.tasks = page.tasks;
    this.total = page.totalCount;
    this.nextToken = page.nextPageToken;
    this.rangeEnd = page.tasks.at(-1) ?? null;
    this.recent = [];
    this.loading = null;
    this.element.setAttribute("aria-busy", "false");
    this.draw();
  }

  /** The next page, once, when the list is scrolled near its end. */
  loadMore(): Promise<void> {
    if (!this.nextToken || this.loading) return this.loading ?? Promise.resolve();
    const generation = this.generation;
    const token = this.nextToken;
    this.loading = (async () => {
      try {
        const page = await this.client.listTasks(listRequest(this.filters, this.status, NEXT_PAGE, token));
        if (generation !== this.generation) return;
        const have = new Set(this.tasks.map((task) => task.id));
        const fresh = page.tasks.filter((task) => !have.has(task.id));
        this.tasks = [...this.tasks, ...fresh];
        this.nextToken = page.nextPageToken;
        this.rangeEnd = page.tasks.at(-1) ?? this.rangeEnd;
        // Events after this page's snapshot may already have passed these tasks by: apply them again.
        this.board.replay(this, page.sequence, new Set(fresh.map((task) => task.id)));
        this.draw();
      } finally {
        if (generation === this.generation) this.loading = null;
      }
    })();
    return this.loading;
  }

  /** Apply one watch event (in sequence order); `countChanges` false: to the loaded tasks only. */
  apply(event: TaskEvent, countChanges = true): void {
    const task = event.task;
    if (!task || event.sequence <= this.sequence) return;
    const index = this.tasks.findIndex((t) => t.id === task.id);
    const current = index >= 0 ? this.tasks[index] : undefined;
    if (current && current.version >= task.version && event.eventType !== EventType.DELETED) {
      // A later page already holds this version: whether the task was here before is unknown.
      if (countChanges) this.count(event.sequence, null);
      return;
    }
    const inRange = this.inRange(task);
    const fits = event.eventType !== EventType.DELETED && matches(task, this.filters, this.status);
    let delta: Delta;
    if (event.eventType === EventType.DELETED) {
      delta = current || matches(task, this.filters, this.status) ? -1 : 0;
    } else if (event.eventType === EventType.CREATED) {
      delta = fits ? 1 : 0;
    } else if (current) {
      delta = fits ? 0 : -1;
    } else if (inRange) {
      delta = fits ? 1 : 0; // inside the loaded range it would be loaded had it been here already
    } else {
      delta = null;
    }
    if (current && !fits) this.tasks.splice(index, 1);
    else if (current && fits) this.tasks[index] = task;
    else if (!current && fits && inRange) this.insert(task);
    if (countChanges) this.count(event.sequence, delta);
    this.draw();
  }

  /** A change this board made itself (its answer, or an optimistic guess): applied at once. */
  applyLocal(task: Task, before: Task | undefined): void {
    const had = before !== undefined && matches(before, this.filters, this.status);
    const fits = matches(task, this.filters, this.status);
    const index = this.tasks.findIndex((t) => t.id === task.id);
    if (index >= 0) {
      if (fits) this.tasks[index] = task;
      else this.tasks.splice(index, 1);
    } else if (fits && this.inRange(task)) {
      this.insert(task);
    }
    this.total += Number(fits) - Number(had);
    this.draw();
  }

  setPending(id: string, pending: boolean): void {
    if (pending) this.pending.add(id);
    else this.pending.delete(id);
    const index = this.tasks.findIndex((t) => t.id === id);
    if (index >= 0) this.tasks[index] = { ...this.tasks[index] }; // a new object: the row is redrawn
    this.draw();
  }

  private inRange(task: Task): boolean {
    return !this.nextToken || this.rangeEnd === null || compareTasks(task, this.rangeEnd) <= 0;
  }

  private insert(task: Task): void {
    let at = this.tasks.findIndex((t) => compareTasks(task, t) < 0);
    if (at < 0) at = this.tasks.length;
    this.tasks.splice(at, 0, task);
  }

  private count(sequence: bigint, delta: Delta): void {
    if (sequence <= this.countAsOf) return; // the count already reflects it
    this.recent.push({ sequence, delta });
    if (this.recent.length > RECENT_MAX) this.recent.splice(0, this.recent.length - RECENT_MAX);
    if (delta === null) this.scheduleRecount();
    else this.total += delta;
  }

  private scheduleRecount(): void {
    if (this.recountTimer !== undefined) return;
    this.recountTimer = window.setTimeout(() => void this.recount(), RECOUNT_AFTER_MS);
  }

  private async recount(): Promise<void> {
    const generation = this.generation;
    this.recountTimer = undefined;
    try {
      const page = await this.client.listTasks({ ...listRequest(this.filters, this.status, 1) });
      if (generation !== this.generation) return;
      const later = this.recent.filter((entry) => entry.sequence > page.sequence);
      this.countAsOf = page.sequence > this.countAsOf ? page.sequence : this.countAsOf;
      this.recent = later;
      this.total = page.totalCount + later.reduce((sum, entry) => sum + (entry.delta ?? 0), 0);
      this.draw();
      if (later.some((entry) => entry.delta === null)) this.scheduleRecount();
    } catch {
      if (generation === this.generation) this.scheduleRecount();
    }
  }

  /** Redraw what is in view (a subtask elsewhere on the board changed). */
  draw(): void {
    this.countText.textContent = `(${this.total.toLocaleString("en")})`;
    this.element.dataset.total = String(this.total);
    this.element.dataset.loaded = String(this.tasks.length);
    this.empty.hidden = this.tasks.length > 0 || this.element.getAttribute("aria-busy") === "true";
    this.list.setItems(this.tasks.filter((task) => !this.board.underParent(task)));
  }
}
