"""SQL for list queries, shared by the SQL stores (they differ only in placeholder style)."""

from __future__ import annotations

from collections.abc import Callable

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.paging import PageQuery, TaskFilter
from taskservice.domain.values import due_key, us_from_timestamp
from taskservice.domain.visibility import Sight

SORT_COLUMNS = {
    "created_at": "created_us",
    "updated_at": "updated_us",
    "priority": "priority",
    "due_date": "due_key",
}


class Params:
    """Collects query parameters and renders placeholders (`?` for SQLite, `$n` for PostgreSQL)."""

    def __init__(self, style: Callable[[int], str]) -> None:
        self.values: list[object] = []
        self._style = style

    def add(self, value: object) -> str:
        self.values.append(value)
        return self._style(len(self.values))

    def add_all(self, values: tuple[object, ...]) -> str:
        return ", ".join(self.add(v) for v in values)


def where(task_filter: TaskFilter, params: Params) -> list[str]:
    f = task_filter
    clauses: list[str] = []
    if f.visible_to is not None:
        clauses.append(visible_sql(f.visible_to, params))
    clauses.append("deleted_us > 0" if f.trashed else "deleted_us = 0")
    if f.project_ids:
        clauses.append(f"project_id IN ({params.add_all(f.project_ids)})")
    if f.parent_ids:
        clauses.append(f"parent_id IN ({params.add_all(f.parent_ids)})")
    if f.statuses:
        clauses.append(f"status IN ({params.add_all(f.statuses)})")
    if f.priorities:
        clauses.append(f"priority IN ({params.add_all(f.priorities)})")
    if f.assigned_to:
        clauses.append(f"assigned_to = {params.add(f.assigned_to)}")
    if f.created_by:
        clauses.append(f"created_by = {params.add(f.created_by)}")
    if f.task_ids:
        clauses.append(f"id IN ({params.add_all(f.task_ids)})")
    if f.labels:
        clauses.append(
            "EXISTS (SELECT 1 FROM task_labels l WHERE l.task_id = tasks.id "
            f"AND l.label IN ({params.add_all(f.labels)}))"
        )
    return clauses


def visible_sql(sight: Sight, params: Params) -> str:
    """`Sight.sees` as SQL: assigned to the user, their personal task, or in one of their projects.
    One placeholder each: SQLite's `?` binds positionally, so a shared one would be one value short."""
    parts = [
        f"assigned_to = {params.add(sight.user)}",
        f"(project_id = '' AND created_by = {params.add(sight.user)})",
    ]
    if sight.projects:
        parts.append(f"project_id IN ({params.add_all(tuple(sorted(sight.projects)))})")
    return "(" + " OR ".join(parts) + ")"


def page_sql(query: PageQuery, params: Params) -> str:
    column = SORT_COLUMNS[query.order_by]
    clauses = where(query.filter, params)
    direction = "DESC" if query.descending else "ASC"
    if query.after is not None:
        op = "<" if query.descending else ">"
        value, task_id = query.after
        clauses.append(f"({column}, id) {op} ({params.add(value)}, {params.add(task_id)})")
    sql = "SELECT body FROM tasks"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql + f" ORDER BY {column} {direction}, id {direction} LIMIT {params.add(query.limit)}"


def count_sql(task_filter: TaskFilter, params: Params) -> str:
    clauses = where(task_filter, params)
    return "SELECT count(*) FROM tasks" + (" WHERE " + " AND ".join(clauses) if clauses else "")


def snapshot_sql(task_filter: TaskFilter, params: Params) -> str:
    clauses = where(task_filter, params)
    return "SELECT body FROM tasks" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY id"


def update_task_sql(style: Callable[[int], str]) -> str:
    """The statement that writes a changed task; its parameters are `update_task_values(task)`."""
    p = [style(i) for i in range(1, 11)]
    return (
        f"UPDATE tasks SET assigned_to = {p[0]}, status = {p[1]}, priority = {p[2]}, updated_us = {p[3]}, "
        f"due_key = {p[4]}, body = {p[5]}, project_id = {p[6]}, parent_id = {p[7]}, deleted_us = {p[8]} "
        f"WHERE id = {p[9]}"
    )


def update_task_values(task: pb.Task) -> tuple[object, ...]:
    return (
        task.assigned_to,
        task.status,
        task.priority,
        us_from_timestamp(task.updated_at),
        due_key(task),
        task.SerializeToString(),
        task.project_id,
        task.parent_id,
        deleted_us(task),
        task.id,
    )


def task_row(task: pb.Task, body: bytes | None = None) -> tuple[object, ...]:
    """A task as the `tasks` table's columns, in order (`body`: its encoding, when already made)."""
    return (
        task.id,
        task.created_by,
        task.assigned_to,
        task.status,
        task.priority,
        us_from_timestamp(task.created_at),
        us_from_timestamp(task.updated_at),
        due_key(task),
        task.SerializeToString() if body is None else body,
        task.project_id,
        task.parent_id,
        deleted_us(task),
    )


def deleted_us(task: pb.Task) -> int:
    """When the task went to the trash (0: it is not there)."""
    return us_from_timestamp(task.delete_time) if task.HasField("delete_time") else 0
