// What the board shows: the filter form's values, the ListTasks / WatchTasks requests they make,
// and the same test on one task, so a live event lands in the column whose query it matches. The
// search box's text goes to the server as it is (search.ts): only the server can tell whether a
// task matches a filter expression or full-text words, so then the test answers "ask the server".

import type { MessageInitShape } from "@bufbuild/protobuf";
import { searchFields } from "./search";
import {
  type ListTasksRequestSchema,
  type Task,
  type TaskStatus,
  type WatchTasksRequestSchema,
} from "./gen/taskservice/task_service_pb";

export interface Filters {
  projectId: string; // "" for every task the caller may see
  priority: number;
  label: string;
  assignee: string;
  /** The search box as the server reads it: an AIP-160 `filter`, or full-text `query` words. */
  filter: string;
  query: string;
}

export const NO_FILTERS: Filters = { projectId: "", priority: 0, label: "", assignee: "", filter: "", query: "" };

export type ListRequest = MessageInitShape<typeof ListTasksRequestSchema>;
export type WatchRequest = MessageInitShape<typeof WatchTasksRequestSchema>;

/** A column's order: newest first (an index range scan on the server at any size). Kept with a
 * full-text `query` too, whose default order would be relevance: keyset pages and live inserts
 * need an order the board can compute from a task. */
const ORDER_BY = "created_at";

/** The filter form's values, for the project `projectId` ("" for all of them). */
export function readFilters(form: HTMLFormElement, projectId: string): Filters {
  const value = (name: string): string => (form.elements.namedItem(name) as HTMLInputElement).value.trim();
  return {
    projectId,
    priority: Number(value("priority")) || 0,
    label: value("label"),
    assignee: value("assignee"),
    ...searchFields(value("q")),
  };
}

/** True when the search box is in use: whether a task belongs then takes the server's answer. */
export function searching(f: Filters): boolean {
  return f.filter !== "" || f.query !== "";
}

/** The ListTasks request for one column's page; every filter is applied by the server. */
export function listRequest(f: Filters, status: TaskStatus, pageSize: number, pageToken = ""): ListRequest {
  return {
    projectId: f.projectId,
    statuses: [status],
    priorities: f.priority ? [f.priority] : [],
    labels: f.label ? [f.label] : [],
    assignedTo: f.assignee,
    filter: f.filter,
    query: f.query,
    orderBy: ORDER_BY,
    descending: true,
    pageSize,
    pageToken,
  };
}

/** The board's one watch: every column at once, narrowed by what WatchTasks can filter on (its
 * `filter` too: the server then also sends the changes that took a task out of it). */
export function watchRequest(f: Filters, afterSequence: bigint): WatchRequest {
  const labels = f.label ? [f.label] : [];
  const projectIds = f.projectId ? [f.projectId] : [];
  // A store that never logged an event (filled outside the server) lists sequence 0, which the
  // server reads as "from now": the only case where a write between list and watch could be missed.
  return { labels, projectIds, filter: f.filter, afterSequence };
}

/** The server's test for `listRequest` (store/sql.py `where`), on one task: true or false when the
 * board can tell, null when every other filter passes and only the server can judge the search. */
export function matches(task: Task, f: Filters, status: TaskStatus): boolean | null {
  const fixed =
    task.status === status &&
    !task.deleteTime && // in the trash
    (!f.projectId || task.projectId === f.projectId) &&
    (!f.priority || task.priority === f.priority) &&
    (!f.label || task.labels.includes(f.label)) &&
    (!f.assignee || task.assignedTo === f.assignee);
  return fixed && searching(f) ? null : fixed;
}

function createdUs(task: Task): bigint {
  const at = task.createdAt;
  return at ? at.seconds * 1_000_000n + BigInt(Math.floor(at.nanos / 1000)) : 0n;
}

/** Negative when `a` comes before `b` in a column (the server's ORDER BY created_us DESC, id DESC). */
export function compareTasks(a: Task, b: Task): number {
  const ua = createdUs(a);
  const ub = createdUs(b);
  if (ua !== ub) return ua > ub ? -1 : 1;
  return a.id === b.id ? 0 : a.id > b.id ? -1 : 1;
}
