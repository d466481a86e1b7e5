// The board: one Column per status, one LiveWatch feeding them, drag and drop and keyboard moves
// between them, and this board's own writes applied at once (moves optimistically, reverted when
// the server refuses them).

import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskClient } from "./api";
import type { CardActions } from "./card";
import { Column, type ColumnBoard } from "./column";
import { enableDragAndDrop } from "./dragdrop";
import { type Filters, NO_FILTERS, watchRequest } from "./filters";
import { COLUMNS } from "./format";
import { EventType, type Task, type TaskEvent, type TaskStatus } from "./gen/taskservice/task_service_pb";
import { type ConnectionState, LiveWatch } from "./live";

export interface BoardHandlers {
  state(state: ConnectionState, detail?: string): void;
  /** Tell the person something (an empty string clears it). */
  say(message: string): void;
  edit(task: Task): void;
  addSubtask(parent: Task): void;
  /** A live event arrived (a project shared with the caller may have come with it). */
  changed(): void;
  /** The server refused the filters (a search it cannot read: its message names the column), or
   * took them (an empty string); a refused search leaves the board showing what it showed. */
  refused(message: string): void;
}

const REPLAY_MAX = 5000; // recent events kept to bring a freshly loaded page up to date
const LOCAL_MAX = 1000;

export class Board {
  readonly columns: Column[];
  private live: LiveWatch | null = null;
  private filters: Filters = NO_FILTERS;
  private childIndex: Map<string, Task[]> | null = null;
  private generation = 0;
  private recent: TaskEvent[] = [];
  /** Versions this board wrote and applied itself: their events change nothing more. */
  private local = new Map<string, bigint>();
  private moving = new Map<string, Promise<void>>();
  private readonly undrag: () => void;

  constructor(
    private readonly root: HTMLElement,
    private readonly client: TaskClient,
    private readonly on: BoardHandlers,
  ) {
    const actions: CardActions = {
      edit: (task) => on.edit(task),
      move: (task, status) => void this.move(task.id, status),
      addSubtask: (parent) => on.addSubtask(parent),
    };
    const board: ColumnBoard = {
      replay: (column, after, ids) => this.replay(column, after, ids),
      children: (task) => this.children(task),
      underParent: (task) => task.parentId !== "" && this.find(task.parentId) !== undefined,
    };
    this.columns = COLUMNS.map(([status, name]) => new Column(status, name, client, actions, board));
    root.replaceChildren(...this.columns.map((column) => column.element));
    this.undrag = enableDragAndDrop(this.columns, (id, _from, to) => void this.move(id, to));
  }

  /** The filters the columns show (or are loading). */
  get shown(): Filters {
    return this.filters;
  }

  /** Load every column's first page under `filters`, then follow the changes from there. Until
   * every page is in, the columns keep what they show (and follow it), so filters the server
   * refuses change nothing. */
  async show(filters: Filters): Promise<void> {
    const generation = ++this.generation;
    for (const column of this.columns) column.busy(true);
    let pages;
    try {
      pages = await Promise.all(this.columns.map((column) => column.firstPage(filters)));
    } catch (error) {
      if (generation !== this.generation) return;
      for (const column of this.columns) column.busy(column.sequence < 0);
      const err = ConnectError.from(error);
      if (err.code === Code.InvalidArgument) {
        this.on.refused(err.rawMessage);
        return;
      }
      if (err.code === Code.Unauthenticated || err.code === Code.PermissionDenied) {
        this.on.state("signed-out", err.rawMessage);
        return;
      }
      this.on.state("reconnecting", err.rawMessage);
      window.setTimeout(() => {
        if (generation === this.generation) void this.show(filters);
      }, 1000);
      return;
    }
    if (generation !== this.generation) return;
    this.on.refused("");
    this.filters = filters;
    this.live?.stop();
    this.live = null;
    this.recent = [];
    this.columns.forEach((column, i) => column.show(filters, pages[i]));
    this.changedTasks(true);
    // Which filters the columns show now (for tests and styles): `priority=0&label=…&assignee=…`.
    this.root.dataset.filters = new URLSearchParams(Object.entries(filters).map(([k, v]) => [k, String(v)])).toString();
    const after = this.columns.reduce((min, c) => (c.sequence < min ? c.sequence : min), this.columns[0].sequence);
    this.live = new LiveWatch(this.client, (seq) => watchRequest(this.filters, seq), after, {
      event: (event) => this.apply(event),
      state: (state, detail) => this.on.state(state, detail),
      reload: () => void this.show(this.filters),
    });
    void this.live.run();
  }

  stop(): void {
    this.generation++;
    this.live?.stop();
    this.live = null;
    this.undrag();
    for (const column of this.columns) column.destroy();
  }

  find(id: string): Task | undefined {
    for (const column of this.columns) {
      const task = column.find(id);
      if (task) return task;
    }
    return undefined;
  }

  /** A task this board just wrote (the server's answer): shown without waiting for its event. */
  applyLocal(task: Task, before: Task | undefined = this.find(task.id)): void {
    this.local.set(task.id, task.version);
    if (this.local.size > LOCAL_MAX) this.local.delete(this.local.keys().next().value as string);
    for (const column of this.columns) column.applyLocal(task, before);
    this.changedTasks(task.parentId !== "");
  }

  /** Move a card to another column: at once on screen, then on the server; back if it refuses.
   * Moves of one card run one after another, so each carries the version the previous one made. */
  move(id: string, status: TaskStatus): Promise<void> {
    const next = (this.moving.get(id) ?? Promise.resolve()).then(() => this.moveNow(id, status));
    this.moving.set(id, next);
    void next.finally(() => {
      if (this.moving.get(id) === next) this.moving.delete(id);
    });
    return next;
  }

  private async moveNow(id: string, status: TaskStatus): Promise<void> {
    const before = this.find(id);
    if (!before || before.status === status) return;
    const focused = (document.activeElement as HTMLElement | null)?.closest<HTMLElement>("[data-task-id]");
    const hadFocus = focused?.dataset.taskId === id;
    const guess: Task = { ...before, status };
    for (const column of this.columns) column.applyLocal(guess, before, true);
    this.setPending(id, true);
    if (hadFocus) this.focusCard(id, status);
    try {
      const updated = await this.client.updateTask({ id, status, expectedVersion: before.version });
      this.setPending(id, false);
      this.applyLocal(updated, this.find(id) ?? guess);
      this.on.say("");
    } catch (error) {
      this.setPending(id, false);
      const now = this.find(id);
      // Put it back unless a newer version arrived meanwhile (that one is the truth now).
      if (!now || now.version === before.version) {
        for (const column of this.columns) column.applyLocal(before, now ?? guess);
        if (hadFocus) this.focusCard(id, before.status);
      }
      this.on.say(refusal(before, status, error));
    }
  }

  private focusCard(id: string, status: TaskStatus): void {
    const column = this.columns.find((c) => c.status === status);
    column?.list.reveal(id)?.focus();
  }

  private setPending(id: string, pending: boolean): void {
    for (const column of this.columns) column.setPending(id, pending);
  }

  private apply(event: TaskEvent): void {
    const task = event.task;
    if (!task) return;
    this.recent.push(event);
    if (this.recent.length > REPLAY_MAX) this.recent.splice(0, this.recent.length - REPLAY_MAX);
    const mine = this.local.get(task.id);
    if (mine !== undefined && event.eventType !== EventType.DELETED && task.version <= mine) {
      if (task.version === mine) this.local.delete(task.id);
      return;
    }
    for (const column of this.columns) column.apply(event);
    this.changedTasks(task.parentId !== "");
    this.on.changed();
  }

  /** The loaded subtasks of `task`, from an index rebuilt after the loaded tasks change. */
  private children(task: Task): readonly Task[] {
    if (this.childIndex === null) {
      this.childIndex = new Map();
      for (const column of this.columns) {
        for (const t of column.loaded) {
          if (t.parentId) this.childIndex.set(t.parentId, [...(this.childIndex.get(t.parentId) ?? []), t]);
        }
      }
    }
    return this.childIndex.get(task.id) ?? [];
  }

  /** Loaded tasks changed; a subtask among them: its parent's card (maybe in another column) too. */
  private changedTasks(subtask: boolean): void {
    this.childIndex = null;
    if (subtask) for (const column of this.columns) column.draw();
  }

  private replay(column: Column, after: bigint, ids: Set<string> | null): void {
    for (const event of this.recent) {
      if (event.sequence <= after || !event.task) continue;
      if (ids === null) column.apply(event);
      else if (ids.has(event.task.id)) column.apply(event, false);
    }
  }
}

function refusal(task: Task, status: TaskStatus, error: unknown): string {
  const err = ConnectError.from(error);
  const to = COLUMNS.find(([s]) => s === status)?.[1] ?? "the other column";
  const what = `“${task.title}” could not move to ${to}`;
  if (err.code === Code.Aborted) return `${what}: someone else changed it first, so it went back. Try again.`;
  if (err.code === Code.PermissionDenied || err.code === Code.NotFound)
    return `${what}: you may not change it (${err.rawMessage}).`;
  return `${what}: ${err.rawMessage || "the server refused"}. It went back.`;
}
