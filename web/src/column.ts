// One board column: a ListTasks page of its status, more pages on scroll, and live events applied
// to what is loaded. Its count is the server's total_count, kept exact from events; when an event
// cannot tell whether a task was in the column before (an update to a task beyond the loaded
// pages), the column asks the server again and adds the certain changes that came after. While a
// search is on, whether a changed task belongs is the server's to say: the column then lists its
// loaded range again (debounced, one request at a time) and replays the events that came after.

import type { TaskClient } from "./api";
import { card, type CardActions } from "./card";
import { h } from "./dom";
import { type Filters, NO_FILTERS, compareTasks, listRequest, matches } from "./filters";
import {
  EventType,
  type ListTasksResponse,
  type Task,
  type TaskEvent,
  type TaskStatus,
} from "./gen/taskservice/task_service_pb";
import { VirtualList } from "./virtual-list";

export const FIRST_PAGE = 50;
const NEXT_PAGE = 100;
const RECOUNT_AFTER_MS = 300;
const RECENT_MAX = 2000;
const RESYNC_AFTER_MS = 150;
const RESYNC_RETRY_MS = 1000;
/** The most a resync lists at once: the server's largest page. */
const RESYNC_MAX = 1000;

/** What a column asks of the board it is on. */
export interface ColumnBoard {
  /** Apply the recent events after `after` to the tasks `ids` that a later page just brought, or,
   * with `ids` null, every one of them, counted (the column's pages were just listed again). */
  replay(column: Column, after: bigint, ids: Set<string> | null): void;
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
  private filters: Filters = NO_FILTERS;
  private loading: Promise<void> | null = null;
  private generation = 0;
  private pending = new Set<string>();
  private countAsOf = -1n;
  private recent: Array<{ sequence: bigint; delta: Delta }> = [];
  private recountTimer: number | undefined;
  private resyncTimer: number | undefined;
  private resyncing = false;
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
    window.clearTimeout(this.resyncTimer);
    this.list.destroy();
  }

  get loaded(): readonly Task[] {
    return this.tasks;
  }

  find(id: string): Task | undefined {
    return this.tasks.find((task) => task.id === id);
  }

  /** Say whether the column is loading (assistive technology then waits for it). */
  busy(loading: boolean): void {
    this.element.setAttribute("aria-busy", String(loading));
    this.draw();
  }

  /** The first page under `filters`, not shown yet (a refused search leaves the column as it is). */
  firstPage(filters: Filters, size = FIRST_PAGE): Promise<ListTasksResponse> {
    return this.client.listTasks(listRequest(filters, this.status, size));
  }

  /** Show `page`, the first page under `filters`, replacing everything loaded before. */
  show(filters: Filters, page: ListTasksResponse): void {
    this.generation++;
    this.filters = filters;
    window.clearTimeout(this.recountTimer);
    window.clearTimeout(this.resyncTimer);
    this.recountTimer = this.resyncTimer = undefined;
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
    const verdict = event.eventType === EventType.DELETED ? false : matches(task, this.filters, this.status);
    const was = event.eventType === EventType.DELETED ? matches(task, this.filters, this.status) : false;
    if (verdict === null || (was === null && !current)) {
      // Only the server can tell whether it belongs (a search is on): a loaded card shows the new
      // version until the column's pages are listed again; a task not shown waits for them.
      if (current) this.tasks[index] = task;
      this.resyncSoon();
      this.draw();
      return;
    }
    const fits = verdict;
    let delta: Delta;
    if (event.eventType === EventType.DELETED) {
      delta = current || was ? -1 : 0;
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

  /** A change this board made itself (its answer, or an optimistic guess): applied at once.
   * `before` is the task as the board showed it (undefined: not on the board). While a search is
   * on, a task that was on the board is taken to still match it until the server says otherwise;
   * one that was not (a new task) is shown only once the server lists it. A `guess` (a move not
   * answered yet) is not checked with the server: its answer will be. */
  applyLocal(task: Task, before: Task | undefined, guess = false): void {
    const hadVerdict = before === undefined ? false : matches(before, this.filters, this.status);
    const fitsVerdict = matches(task, this.filters, this.status);
    if (!guess && (hadVerdict === null || fitsVerdict === null)) this.resyncSoon();
    const had = hadVerdict ?? true;
    const fits = fitsVerdict ?? before !== undefined;
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
    if (this.recountTimer !== undefined || this.resyncTimer !== undefined) return;
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

  /** List the loaded range again soon (a search is on and only the server can place a change). */
  private resyncSoon(delay = RESYNC_AFTER_MS): void {
    if (this.resyncTimer !== undefined) return;
    window.clearTimeout(this.recountTimer); // the resync counts too
    this.recountTimer = undefined;
    this.resyncTimer = window.setTimeout(() => void this.resync(), delay);
  }

  /** The first page again, as large as what is loaded, then the events that came after it. */
  private async resync(): Promise<void> {
    this.resyncTimer = undefined;
    if (this.resyncing) {
      this.resyncSoon(); // one request at a time; ask again once it is in
      return;
    }
    const generation = this.generation;
    const size = Math.min(Math.max(this.tasks.length, FIRST_PAGE), RESYNC_MAX);
    this.resyncing = true;
    try {
      const page = await this.firstPage(this.filters, size);
      if (generation !== this.generation) return;
      this.show(this.filters, page);
      this.board.replay(this, page.sequence, null);
    } catch {
      if (generation === this.generation) this.resyncSoon(RESYNC_RETRY_MS);
    } finally {
      this.resyncing = false;
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
