// Keeps a live copy of the tasks the caller may see, through WatchTasks.
//
// The first connection asks for the current state (include_initial); after a drop it resumes with
// after_sequence set to the last event applied, so nothing is missed or applied twice. Only when the
// server no longer holds that history (OUT_OF_RANGE) does it reload the whole state.

import { Code, ConnectError } from "@connectrpc/connect";
import { EventType, type Task, type TaskEvent } from "./gen/taskservice/task_service_pb";
import type { TaskClient } from "./api";

export type ConnectionState = "connecting" | "live" | "reconnecting" | "signed-out";

export interface LiveHandlers {
  changed(tasks: ReadonlyMap<string, Task>): void;
  state(state: ConnectionState, detail?: string): void;
  visible(task: Task): boolean;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

export class LiveTasks {
  readonly tasks = new Map<string, Task>();
  private sequence = 0n;
  private abort: AbortController | null = null;
  private wake: (() => void) | null = null;
  private stopped = false;

  constructor(
    private readonly client: TaskClient,
    private readonly on: LiveHandlers,
  ) {
    window.addEventListener("online", () => this.wake?.());
  }

  /** Run until stop(): connect, apply events, and reconnect with backoff after every drop. */
  async run(): Promise<void> {
    let delay = RETRY_MIN_MS;
    let first = true;
    while (!this.stopped) {
      this.on.state(first ? "connecting" : "reconnecting");
      first = false;
      try {
        await this.follow(() => {
          delay = RETRY_MIN_MS;
          this.on.state("live");
        });
      } catch (error) {
        const err = ConnectError.from(error);
        if (this.stopped || err.code === Code.Canceled) return;
        if (err.code === Code.Unauthenticated || err.code === Code.PermissionDenied) {
          this.on.state("signed-out", err.rawMessage);
          return;
        }
        if (err.code === Code.OutOfRange) this.sequence = 0n; // history gone: reload the state
        this.on.state("reconnecting", err.rawMessage);
      }
      await this.pause(delay);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
  }

  /** Apply a task the caller just wrote, without waiting for its event (events win if newer). */
  applyLocal(task: Task): void {
    if (this.upsert(task)) this.on.changed(this.tasks);
  }

  private async follow(connected: () => void): Promise<void> {
    this.abort = new AbortController();
    const resume = this.sequence > 0n;
    const request = resume ? { afterSequence: this.sequence } : { includeInitial: true };
    const stream = this.client.watchTasks(request, {
      signal: this.abort.signal,
      timeoutMs: 0,
      onHeader: connected,
    });
    if (!resume && this.tasks.size) {
      this.tasks.clear();
      this.on.changed(this.tasks);
    }
    for await (const event of stream) {
      this.apply(event);
    }
    // A watch only ends when the server ends it: treat it as a drop and resume.
    throw new ConnectError("the watch ended", Code.Unavailable);
  }

  private apply(event: TaskEvent): void {
    if (event.sequence > this.sequence) this.sequence = event.sequence;
    const task = event.task;
    if (!task) return;
    if (event.eventType === EventType.DELETED || !this.on.visible(task)) {
      if (!this.tasks.delete(task.id)) return;
    } else if (!this.upsert(task)) {
      return;
    }
    this.on.changed(this.tasks);
  }

  private upsert(task: Task): boolean {
    const current = this.tasks.get(task.id);
    if (current && current.version > task.version) return false;
    this.tasks.set(task.id, task);
    return true;
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }
}
