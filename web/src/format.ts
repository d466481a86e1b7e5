// How tasks read on the board: names for enums, dates as calendar days.

import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Priority, TaskStatus, type Task } from "./gen/taskservice/task_service_pb";

export const COLUMNS: ReadonlyArray<[TaskStatus, string]> = [
  [TaskStatus.TODO, "To do"],
  [TaskStatus.IN_PROGRESS, "In progress"],
  [TaskStatus.DONE, "Done"],
  [TaskStatus.CANCELLED, "Cancelled"],
];

export const PRIORITY_NAMES: Record<number, string> = {
  [Priority.UNSPECIFIED]: "Medium",
  [Priority.LOW]: "Low",
  [Priority.MEDIUM]: "Medium",
  [Priority.HIGH]: "High",
  [Priority.CRITICAL]: "Critical",
};

export function splitLabels(text: string): string[] {
  const labels = text.split(",").map((l) => l.trim()).filter(Boolean);
  return [...new Set(labels)];
}

/** `yyyy-mm-dd` from an <input type=date> as midnight UTC, so the day round-trips exactly. */
export function dueFromInput(value: string): Timestamp | undefined {
  return value ? timestampFromDate(new Date(`${value}T00:00:00Z`)) : undefined;
}

export function dueToInput(task: Task): string {
  return task.dueDate ? timestampDate(task.dueDate).toISOString().slice(0, 10) : "";
}

export function isOverdue(task: Task): boolean {
  if (!task.dueDate || task.status === TaskStatus.DONE || task.status === TaskStatus.CANCELLED) return false;
  return timestampDate(task.dueDate).getTime() + 86_400_000 < Date.now();
}
