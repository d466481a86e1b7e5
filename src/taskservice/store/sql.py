"""SQL for list queries, shared by the SQL stores (they differ only in placeholder style)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.filters import SearchQuery
from taskservice.domain.paging import PageQuery, SnapshotPart, TaskFilter
from taskservice.domain.values import due_key, us_from_timestamp
from taskservice.domain.visibility import Sight
from taskservice.store import filter_sql
from taskservice.store.filter_sql import Dialect

SORT_COLUMNS = {
    "created_at": "created_us",
    "updated_at": "updated_us",
    "priority": "priority",
    "due_date": "due_key",
}
# A user in more projects than this reads them in one branch (`project_id IN …`) and lets the
# planner sort: a page per project, merged, stops paying beyond a few dozen projects.
BRANCH_PROJECTS_MAX = 16


class Params:
    """Collects query parameters and renders placeholders (`?` for SQLite, `$n` for PostgreSQL)."""

    def __init__(self, style: Callable[[int], str]) -> None:
        self.values: list[object] = []
        self._style = style
        self.dialect: Dialect = "sqlite" if style(1) == "?" else "postgres"

    def add(self, value: object) -> str:
        self.values.append(value)
        return self._style(len(self.values))

    def add_all(self, values: tuple[object, ...]) -> str:
        return ", ".join(self.add(v) for v in values)


def where(task_filter: TaskFilter, params: Params) -> list[str]:
    """The filter's conditions, visibility included, to be ANDed (counts and snapshots)."""
    f = task_filter
    clauses: list[str] = []
    if f.visible_to is not None:
        clauses.append(visible_sql(f.visible_to, params))
    return clauses + _conditions(f, params)


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


def _conditions(f: TaskFilter, params: Params, priority_index: bool = True) -> list[str]:
    """Every condition but visibility. `priority_index=False` keeps the planner off the priority
    index (four values: reading a page's worth of rows in the order's own index and testing each
    is cheaper than sorting every task of one priority)."""
    clauses = ["deleted_us > 0" if f.trashed else "deleted_us = 0"]
    if f.project_ids:
        clauses.append(f"project_id IN ({params.add_all(f.project_ids)})")
    if f.parent_ids:
        clauses.append(f"parent_id IN ({params.add_all(f.parent_ids)})")
    if f.statuses:
        clauses.append(f"status IN ({params.add_all(f.statuses)})")
    if f.priorities:
        column = "priority" if priority_index else "+priority"
        clauses.append(f"{column} IN ({params.add_all(f.priorities)})")
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
    if f.expression is not None:
        clauses.append(filter_sql.condition(f.expression.expr, params, params.dialect))
    if f.search is not None:
        clauses.append(_matches_search(f.search, params))
    return clauses


def _matches_search(search: SearchQuery, params: Params) -> str:
    if params.dialect == "sqlite":
        return f"tasks.rowid IN (SELECT rowid FROM tasks_fts WHERE tasks_fts MATCH {params.add(fts5_query(search))})"
    return f"tasks.search @@ to_tsquery('simple', {params.add(tsquery(search))})"


def fts5_query(search: SearchQuery) -> str:
    """FTS5 query syntax: each term a quoted phrase (so no word is read as an operator), ANDed."""
    return " ".join(
        '"' + " ".join(term.words).replace('"', '""') + '"' + ("*" if term.prefix else "")
        for term in search.terms
    )


def tsquery(search: SearchQuery) -> str:
    """PostgreSQL tsquery syntax: a phrase's words joined by <->, terms by &, prefixes as :*."""
    terms = []
    for term in search.terms:
        words = [f"'{word}'" for word in term.words]  # words are letters and digits only: no quoting needed
        if term.prefix:
            words[-1] += ":*"
        terms.append(" <-> ".join(words))
    return " & ".join(f"({term})" for term in terms)


def page_sql(query: PageQuery, params: Params) -> str:
    """One keyset page. A user sees the tasks assigned to them, their personal tasks and their
    projects' tasks: an OR the planners answer by collecting every such task and sorting them all.
    Instead each part (`_branches`) is its own ordered index read, and the reads are merged: the
    cost is about a page's worth of rows, whatever the number of tasks."""
    if query.by_relevance:
        return _relevance_page_sql(query, params)
    keys = [(SORT_COLUMNS[key.field], key.descending) for key in query.order]
    keys.append(("id", query.order[-1].descending))  # the tie-breaker follows the last key
    order = ", ".join(f"{column} {'DESC' if desc else 'ASC'}" for column, desc in keys)
    by_priority = keys[0][0] == "priority"
    f = query.filter
    selects = []
    # Conditions are rendered in text order, branch by branch: SQLite's `?` binds by position.
    branches = list(_branches(f)) if f.visible_to is not None else [_Branch("", None)]
    branch_count = len(branches)
    for branch in branches:
        clauses = branch.conditions(f.visible_to, params)
        table = "tasks"
        if branch.index and params.dialect == "sqlite" and not f.trashed:
            # Read this part in order: statistics see that a status holds a quarter of all
            # tasks, not that this user has only a few, and would read the status index.
            table = f"tasks INDEXED BY {_index_name(branch.index, keys[0][0])}"
        clauses += _conditions(f, params, priority_index=by_priority)
        if query.after is not None:
            values, task_id = query.after
            clauses.append(_after(keys, [*values, task_id], params))
        columns = ", ".join(["body", *(column for column, _ in keys)])
        select = f"SELECT {columns} FROM {table} WHERE {' AND '.join(clauses)}"
        if params.dialect == "postgres" and branch_count > 1:
            # A Merge Append of ordered index scans, each cut at a page.
            select = f"({select} ORDER BY {order} LIMIT {params.add(query.limit)})"
        selects.append(select)
    # SQLite merges the parts of a compound SELECT ordered like its indexes (MERGE (UNION ALL)) and
    # stops at the LIMIT: a page reads about a page of rows in all, not a page from every part.
    return " UNION ALL ".join(selects) + f" ORDER BY {order} LIMIT {params.add(query.limit)}"


def _index_name(family: str, sort_column: str) -> str:
    """The index of `family` ending in `sort_column, id` (migrations 1, 4 and 5 name them so)."""
    suffix = {"created_us": "", "updated_us": "_updated", "priority": "_priority", "due_key": "_due"}
    return family + suffix[sort_column]


class _Branch:
    """One disjoint part of what a Sight sees: its conditions, and the index family (by sort
    column) that reads it in order ("" when the planner chooses)."""

    def __init__(self, index: str, render: Callable[[str, Params], list[str]] | None) -> None:
        self.index = index
        self._render = render

    def conditions(self, sight: Sight | None, params: Params) -> list[str]:
        return self._render(sight.user, params) if self._render is not None and sight is not None else []


def _branches(f: TaskFilter) -> Iterator[_Branch]:
    """Assigned to the user; their personal tasks assigned to someone else; each of their
    projects' tasks assigned to someone else. A project filter (ListTasksRequest.project_id, or
    `project_id = "…"` in the filter) leaves out the parts it excludes, so they are not read."""
    sight = f.visible_to
    assert sight is not None
    wanted = set(f.project_ids) or None
    if f.expression is not None:
        required = filter_sql.required_values(f.expression.expr, "project_id")
        if required is not None:
            wanted = required if wanted is None else wanted & required
    yield _Branch("tasks_by_assignee", lambda user, p: [f"assigned_to = {p.add(user)}"])
    if wanted is None or "" in wanted:
        yield _Branch(
            "tasks_personal_by_creator",
            lambda user, p: [
                f"created_by = {p.add(user)}",
                "project_id = ''",
                f"assigned_to <> {p.add(user)}",
            ],
        )
    projects = sorted(sight.projects if wanted is None else sight.projects & wanted)
    if len(projects) > BRANCH_PROJECTS_MAX:
        yield _Branch(
            "",
            lambda user, p: [
                f"project_id IN ({p.add_all(tuple(projects))})",
                f"assigned_to <> {p.add(user)}",
            ],
        )
        return
    for project in projects:
        yield _Branch("tasks_by_project", _in_project(project))


def _in_project(project: str) -> Callable[[str, Params], list[str]]:
    def render(user: str, params: Params) -> list[str]:
        return [f"project_id = {params.add(project)}", f"assigned_to <> {params.add(user)}"]

    return render


def _after(keys: list[tuple[str, bool]], values: list[object], params: Params) -> str:
    """Rows after `values` in the order `keys`: one row-value comparison when every key runs the same
    way (an index range), else the expanded form (a = x AND b > y) OR a > x."""
    if len({desc for _, desc in keys}) == 1:
        op = "<" if keys[0][1] else ">"
        columns = ", ".join(column for column, _ in keys)
        return f"({columns}) {op} ({params.add_all(tuple(values))})"
    alternatives = []
    for i, (column, desc) in enumerate(keys):
        equal = [f"{c} = {params.add(v)}" for (c, _), v in zip(keys[:i], values[:i], strict=True)]
        equal.append(f"{column} {'<' if desc else '>'} {params.add(values[i])}")
        alternatives.append("(" + " AND ".join(equal) + ")")
    return "(" + " OR ".join(alternatives) + ")"


def _relevance_page_sql(query: PageQuery, params: Params) -> str:
    """Best matches first (FTS5's bm25 rank; PostgreSQL's ts_rank), paged by position."""
    search = query.filter.search
    assert search is not None
    # The match's parameter comes first: SQLite's `?` binds in the order the text names them.
    if params.dialect == "sqlite":
        clauses = [f"tasks_fts MATCH {params.add(fts5_query(search))}"]
        sql = "SELECT tasks.body FROM tasks_fts JOIN tasks ON tasks.rowid = tasks_fts.rowid"
        order = "tasks_fts.rank, tasks.id"
    else:
        q = params.add(tsquery(search))
        clauses = [f"tasks.search @@ to_tsquery('simple', {q})"]
        sql = "SELECT body FROM tasks"
        order = f"ts_rank(tasks.search, to_tsquery('simple', {q})) DESC, tasks.id"
    clauses += where(replace(query.filter, search=None), params)
    sql += " WHERE " + " AND ".join(clauses)
    return sql + f" ORDER BY {order} LIMIT {params.add(query.limit)} OFFSET {params.add(query.offset)}"


def count_sql(task_filter: TaskFilter, params: Params) -> str:
    clauses = where(task_filter, params)
    return "SELECT count(*) FROM tasks" + (" WHERE " + " AND ".join(clauses) if clauses else "")


def snapshot_sql(task_filter: TaskFilter, params: Params, part: SnapshotPart | None = None) -> str:
    """Matching task bodies in id order: all of them, or one `part` (ids after `part.after_id`, at
    most `part.limit` tasks, and no more than the tasks that start within `part.max_bytes`; the
    first one always, however big). The byte bound is applied to the rows the limit already chose,
    so a part reads at most `limit` rows whatever the table holds."""
    clauses = where(task_filter, params)
    if part is None:
        return (
            "SELECT body FROM tasks" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY id"
        )
    if part.after_id:
        clauses.append(f"id > {params.add(part.after_id)}")
    chosen = (
        "SELECT id, body FROM tasks"
        + (" WHERE " + " AND ".join(clauses) if clauses else "")
        + f" ORDER BY id LIMIT {params.add(part.limit)}"
    )
    sized = f"SELECT id, body, SUM(LENGTH(body)) OVER (ORDER BY id) AS upto FROM ({chosen}) AS chosen"
    return f"SELECT body FROM ({sized}) AS sized WHERE upto - LENGTH(body) < {params.add(part.max_bytes)} ORDER BY id"


def update_task_sql(style: Callable[[int], str]) -> str:
    """The statement that writes a changed task; its parameters are `update_task_values(task)`."""
    columns = (*_CHANGING_COLUMNS, "body")
    sets = ", ".join(f"{name} = {style(i)}" for i, name in enumerate(columns, 1))
    return f"UPDATE tasks SET {sets} WHERE id = {style(len(columns) + 1)}"


# The columns an update may change, in `update_task_values` order (created_by and created_us never do).
_CHANGING_COLUMNS = (
    "assigned_to",
    "status",
    "priority",
    "updated_us",
    "due_key",
    "project_id",
    "parent_id",
    "deleted_us",
    "title",
    "description",
    "metadata",
    "version",
)


def update_task_values(task: pb.Task) -> tuple[object, ...]:
    return (
        task.assigned_to,
        task.status,
        task.priority,
        us_from_timestamp(task.updated_at),
        due_key(task),
        task.project_id,
        task.parent_id,
        deleted_us(task),
        task.title,
        task.description,
        metadata_json(task),
        task.version,
        task.SerializeToString(),
        task.id,
    )


def metadata_json(task: pb.Task) -> str:
    """The metadata column: a JSON object (filters read it with json_each / ->>)."""
    if not task.metadata:
        return "{}"
    return json.dumps(dict(task.metadata), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Rows written before migration 5 have version 0 (every task has at least 1): their filter columns
# are filled in from the body once, at start-up.
BACKFILL = "SELECT body FROM tasks WHERE version = 0"

TASK_COLUMNS = 16  # the width of `task_row`, the tasks table's columns in table order


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
        task.title,
        task.description,
        metadata_json(task),
        task.version,
    )


def deleted_us(task: pb.Task) -> int:
    """When the task went to the trash (0: it is not there)."""
    return us_from_timestamp(task.delete_time) if task.HasField("delete_time") else 0
