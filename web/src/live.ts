// The board's one WatchTasks stream, from the sequence its column pages reflect.
//
// It starts at the smallest of the columns' sequences (each column skips events its own page already
// holds); after a drop it resumes with after_sequence set to the last event received, so nothing is
// missed or applied twice. Only when the server no longer holds that history (OUT_OF_RANGE) does
// the board reload its pages.

import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskClient } from "./api";
import type { WatchRequest } from "./filters";
import type { TaskEvent } from "./gen/taskservice/task_service_pb";

export type ConnectionState = "connecting" | "live" | "reconnecting" | "signed-out";

export interface LiveHandlers {
  event(event: TaskEvent): void;
  state(state: ConnectionState, detail?: string): void;
  /** The history after the board's sequence is gone: load the pages again. */
  reload(): void;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

export class LiveWatch {
  private sequence: bigint;
  private abort: AbortController | null = null;
  private wake: (() => void) | null = null;
  private stopped = false;

  constructor(
    private readonly client: TaskClient,
    private readonly request: (after: bigint) => WatchRequest,
    after: bigint,
    private readonly on: LiveHandlers,
  ) {
    this.sequence = after;
    window.addEventListener("online", this.online);
  }

  private readonly online = (): void => this.wake?.();

  /** Run until stop(): connect, deliver events, and reconnect with backoff after every drop. */
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
        if (err.code === Code.OutOfRange) {
          this.stop();
          this.on.reload();
          return;
        }
        this.on.state("reconnecting", err.rawMessage);
      }
      await this.pause(delay);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("online", this.online);
    this.abort?.abort();
    this.wake?.();
  }

  private async follow(connected: () => void): Promise<void> {
    this.abort = new AbortController();
    const stream = this.client.watchTasks(this.request(this.sequence), {
      signal: this.abort.signal,
      timeoutMs: 0,
      onHeader: connected,
    });
    for await (const event of stream) {
      if (this.stopped) return;
      if (event.sequence > this.sequence) this.sequence = event.sequence;
      this.on.event(event);
    }
    // A watch only ends when the server ends it: treat it as a drop and resume.
    throw new ConnectError("the watch ended", Code.Unavailable);
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
