"""A task's history outlives the resume window's retention, and goes with the task; rows written
before the finding migration get their filter columns from their bodies. Both stores."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.values import new_task_id, now_us
from taskservice.store import sql
from taskservice.store.base import NewTask, TaskStore
from taskservice.store.migrations import migrations
from taskservice.store.postgres import PostgresStore
from taskservice.store.sqlite import SQLiteStore
from taskservice.store.sqlite import statements as stmt
from tests.postgres import Database, require_postgres


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Callable[[], TaskStore]]:
    """A function making the store under test (its database made and dropped outside any loop)."""
    if request.param == "sqlite":
        yield lambda: SQLiteStore(None, durable=False)
        return
    require_postgres()
    database = Database().create()
    try:
        yield lambda: PostgresStore(database.url)
    finally:
        database.drop()


def _task(title: str) -> pb.Task:
    task = pb.Task(id=new_task_id(), title=title, created_by="ana", status=pb.TASK_STATUS_TODO, version=1)
    task.created_at.FromMicroseconds(now_us())
    task.updated_at.FromMicroseconds(now_us())
    return task


def _retitle(title: str) -> Callable[[pb.Task], pb.Task]:
    def change(current: pb.Task) -> pb.Task:
        updated = pb.Task()
        updated.CopyFrom(current)
        updated.title = title
        updated.version += 1
        return updated

    return change


def test_pruning_keeps_the_history_of_tasks_that_exist(make_store: Callable[[], TaskStore]) -> None:
    async def run() -> None:
        store = make_store()
        await store.open()
        try:
            kept, gone = _task("kept"), _task("gone")
            await store.create_many([NewTask(kept), NewTask(gone)])
            await store.update(kept.id, _retitle("kept, renamed"), "ana")
            await store.update(gone.id, _retitle("gone, renamed"), "ana")
            await store.delete(gone.id, lambda _: None, "ana")
            removed = await store.prune(now_us() + 1, 0, 0)  # everything is past the retention
            bounds = await store.event_bounds()
            assert bounds.horizon == bounds.head  # replay after this point only
            history = await store.task_events(kept.id, 0, 100)
            assert [e.event_type for e in history] == [pb.EVENT_TYPE_CREATED, pb.EVENT_TYPE_UPDATED]
            assert list(history[1].message().changed_paths.paths) == ["title"]
            assert removed == 3 and await store.task_events(gone.id, 0, 100) == []
            assert await store.events_after(bounds.horizon, 100) == []

            await store.update(kept.id, _retitle("again"), "ana")
            await store.delete(kept.id, lambda _: None, "ana")  # its pruned-window events go now
            assert [e.event_type for e in await store.task_events(kept.id, 0, 100)] == [
                pb.EVENT_TYPE_UPDATED,
                pb.EVENT_TYPE_DELETED,
            ]  # the two past the horizon, which WatchTasks' replay may still need
        finally:
            await store.close()

    asyncio.run(run())


def test_rows_from_before_the_migration_get_their_filter_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in stmt.split_script(migrations("sqlite")[0].sql):
        conn.execute(statement)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us INTEGER NOT NULL)"
    )
    conn.execute("INSERT INTO schema_migrations VALUES (1, 'initial', 0)")
    task = _task("written by version 1")
    task.metadata["team"] = "web"
    conn.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", sql.task_row(task)[:9])
    conn.close()

    async def run() -> None:
        store = SQLiteStore(str(path), durable=False)
        await store.open()
        await store.close()

    asyncio.run(run())
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT title, metadata, version FROM tasks WHERE id = ?", (task.id,)).fetchone()
    assert row == ("written by version 1", '{"team":"web"}', 1)
    assert conn.execute("SELECT rowid FROM tasks_fts WHERE tasks_fts MATCH 'version'").fetchall()
