"""The SQL the SQLite store runs, as functions over a connection: opening one, loading and inserting
tasks, appending events, reading the event log's head and horizon. The store, its writer and the
bulk process share them; none of them keeps state."""

from __future__ import annotations

import functools
import os
import sqlite3
from typing import Any

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import NotFound
from taskservice.domain.values import now_us
from taskservice.store import sql
from taskservice.store.base import (
    PROJECT_EVENT,
    EarlierRequest,
    NewTask,
    StoredEvent,
    decode_event,
    project_event_row,
)

WAL_BACKSTOP_PAGES = 16_384  # 64 MiB of 4 KiB pages: the writer checkpoints past this by itself
UPDATE_TASK = sql.update_task_sql(lambda _: "?")
READER_MMAP_BYTES = 4 << 30


def qmark(_: int) -> str:
    return "?"


def event_from_row(row: tuple[int, int, int, str, bytes, bytes | None]) -> StoredEvent:
    return decode_event(*row)


def connect(path: str, *, durable: bool, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")  # see checkpointer.py
    if readonly:
        conn.execute("PRAGMA query_only=1")
        # Reads map the file instead of copying each page through read(): a list page touches
        # rows all over a large file, and the copies, not the query plan, then dominate its cost.
        # The pages are the kernel's page cache, shared, and dropped under memory pressure.
        conn.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
    return conn


def file_id(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def split_script(script: str) -> list[str]:
    """A migration's statements, one by one; a `;` inside a trigger's BEGIN … END does not end one."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    statements: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    return statements


def refresh_statistics(conn: sqlite3.Connection, *, only_if_stale: bool = False) -> None:
    """Refresh the planner's statistics (sqlite_stat1), sampling at most a thousand rows per index
    so the cost does not grow with the store. Without them SQLite guesses, and guesses a filter's
    index plus a sort of every match over the order's index (see docs/performance.md).
    `only_if_stale`: leave them alone unless the task count moved by half since they were taken."""
    analysed = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()
    if only_if_stale and analysed:
        row = conn.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'tasks' LIMIT 1").fetchone()
        counted = int(str(row[0]).split()[0]) if row else 0
        now = conn.execute("SELECT max(rowid) FROM tasks").fetchone()[0] or 0  # an index-free estimate
        if counted and abs(now - counted) * 2 < counted:
            return
    conn.execute("PRAGMA analysis_limit=1000")
    conn.execute("ANALYZE")


def head(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


def horizon(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'event_horizon'").fetchone()
    return int(bytes(row[0])) if row else 0


def load_task(conn: sqlite3.Connection, task_id: str) -> pb.Task:
    row = conn.execute("SELECT body FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        raise NotFound.task(task_id)
    return pb.Task.FromString(row[0])


def earlier_request(conn: sqlite3.Connection, item: NewTask) -> EarlierRequest | None:
    row = conn.execute(
        "SELECT request_hash, task_id, response FROM idempotency_keys WHERE created_by = ? AND request_id = ?",
        (item.task.created_by, item.request_id),
    ).fetchone()
    if row is None:
        return None
    request_hash, task_id, response = row
    current = conn.execute("SELECT body FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return EarlierRequest(
        bytes(request_hash), pb.Task.FromString(response), pb.Task.FromString(current[0]) if current else None
    )


def insert_created(
    conn: sqlite3.Connection, tasks: list[pb.Task], occurred: int | None = None
) -> list[StoredEvent]:
    """Insert new tasks and their CREATED events, a few multi-row statements per table."""
    if not tasks:
        return []
    bodies = [task.SerializeToString() for task in tasks]
    _insert_rows(
        conn, _INSERT_TASKS, [sql.task_row(task, body) for task, body in zip(tasks, bodies, strict=True)]
    )
    labels = [(label, task.id) for task in tasks for label in task.labels]
    if labels:
        _insert_rows(conn, _INSERT_LABELS, labels)
    occurred = now_us() if occurred is None else occurred
    _insert_rows(
        conn,
        _INSERT_EVENTS,
        [
            (pb.EVENT_TYPE_CREATED, task.id, occurred, task.created_by, body)
            for task, body in zip(tasks, bodies, strict=True)
        ],
    )
    # One writer, inside one transaction: AUTOINCREMENT numbered these rows consecutively up to the head.
    first = head(conn) - len(tasks) + 1
    return [
        StoredEvent(first + i, pb.EVENT_TYPE_CREATED, task, None, occurred, task.created_by)
        for i, task in enumerate(tasks)
    ]


def insert_labels(conn: sqlite3.Connection, task: pb.Task) -> None:
    if task.labels:
        _insert_rows(conn, _INSERT_LABELS, [(label, task.id) for label in task.labels])


_INSERT_TASKS = "INSERT INTO tasks VALUES"
_INSERT_LABELS = "INSERT OR IGNORE INTO task_labels VALUES"
_INSERT_EVENTS = "INSERT INTO events (event_type, task_id, occurred_us, triggered_by, task) VALUES"
_ROWS_PER_STATEMENT = (256, 64, 16, 4, 1)


def _insert_rows(conn: sqlite3.Connection, insert: str, rows: list[tuple[Any, ...]]) -> None:
    """`insert` ... VALUES (…), (…), … for all `rows`, in statements of a few fixed sizes so each is
    prepared once and then taken from the statement cache. One statement per size rather than one
    step per row: the sqlite3 module lets go of the GIL around every step, and taking it back from a
    busy event loop can wait a whole switch interval."""
    at = 0
    for size in _ROWS_PER_STATEMENT:
        while len(rows) - at >= size:
            chunk = rows[at : at + size]
            conn.execute(_values_sql(insert, len(chunk[0]), size), [value for row in chunk for value in row])
            at += size


@functools.cache
def _values_sql(insert: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{insert} {', '.join([one] * rows)}"


def append_event(
    conn: sqlite3.Connection, event_type: int, task: pb.Task, previous: pb.Task | None, triggered_by: str
) -> StoredEvent:
    occurred = now_us()
    cursor = conn.execute(
        "INSERT INTO events (event_type, task_id, occurred_us, triggered_by, task, previous) VALUES (?, ?, ?, ?, ?, ?)",
        (
            event_type,
            task.id,
            occurred,
            triggered_by,
            task.SerializeToString(),
            previous.SerializeToString() if previous is not None else None,
        ),
    )
    assert cursor.lastrowid is not None
    return StoredEvent(cursor.lastrowid, event_type, task, previous, occurred, triggered_by)


def append_project_event(
    conn: sqlite3.Connection, project: pb.Project | None, before: pb.Project | None, triggered_by: str
) -> StoredEvent:
    occurred = now_us()
    project_id, body, previous = project_event_row(project, before)
    cursor = conn.execute(
        "INSERT INTO events (event_type, task_id, occurred_us, triggered_by, task, previous) VALUES (?, ?, ?, ?, ?, ?)",
        (PROJECT_EVENT, project_id, occurred, triggered_by, body, previous),
    )
    assert cursor.lastrowid is not None
    return StoredEvent.of_project(cursor.lastrowid, project, before, occurred, triggered_by)


def load_project(conn: sqlite3.Connection, project_id: str) -> pb.Project:
    row = conn.execute("SELECT body FROM projects WHERE id = ?", (project_id,)).fetchone()
    if row is None:
        raise NotFound.project(project_id)
    return pb.Project.FromString(row[0])


def write_members(conn: sqlite3.Connection, project: pb.Project) -> None:
    """Make project_members hold exactly the project's members."""
    conn.execute("DELETE FROM project_members WHERE project_id = ?", (project.id,))
    conn.executemany(
        "INSERT INTO project_members VALUES (?, ?, ?)",
        [(member.user, project.id, member.role) for member in project.members],
    )
