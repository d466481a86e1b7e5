"""`taskservice_tasks` is counted after the server starts serving: the count reads a whole index,
and events committed while it runs must be counted once, whether the count saw them or not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.store.base import NewTask, StoredEvent, TaskStore
from taskservice.store.postgres import PostgresStore
from taskservice.store.sqlite import SQLiteStore
from taskservice.telemetry import metrics
from tests.postgres import Database, require_postgres

TODO, DONE = pb.TASK_STATUS_TODO, pb.TASK_STATUS_DONE


def _task(task_id: str, status: pb.TaskStatus.ValueType) -> pb.Task:
    return pb.Task(id=task_id, title=task_id, status=status, version=1, created_by="alice")


def _event(sequence: int, event_type: int, task: pb.Task, previous: pb.Task | None = None) -> StoredEvent:
    return StoredEvent(sequence, event_type, task, previous, 0, "alice")


class _CountedAt:
    """A store whose count reflects events up to sequence `head`."""

    def __init__(self, counts: dict[int, int], head: int) -> None:
        self.counts, self.head = counts, head

    async def status_counts(self) -> tuple[dict[int, int], int]:
        return dict(self.counts), self.head


def _gauge(status: str) -> float:
    value: float = metrics.tasks.labels(status)._value.get()
    return value


def test_events_during_the_count_are_added_once() -> None:
    counts = metrics.TaskCounts()
    # Committed while the count ran: sequence 5 is in the count already, 6 and 7 are not.
    counts.on_events([_event(5, pb.EVENT_TYPE_CREATED, _task("a", TODO))])
    counts.on_events(
        [
            _event(6, pb.EVENT_TYPE_CREATED, _task("b", TODO)),
            _event(7, pb.EVENT_TYPE_UPDATED, _task("a", DONE), previous=_task("a", TODO)),
        ]
    )
    asyncio.run(counts.load(_CountedAt({TODO: 2}, head=5)))  # type: ignore[arg-type]
    assert (_gauge("todo"), _gauge("done")) == (2, 1)
    # After the count, events move the gauge directly.
    counts.on_events([_event(8, pb.EVENT_TYPE_DELETED, _task("b", TODO))])
    assert (_gauge("todo"), _gauge("done")) == (1, 1)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_count_and_its_head_are_read_together(tmp_path: Path, kind: str) -> None:
    database = None
    if kind == "postgres":
        require_postgres()
        database = Database().create()
    store: TaskStore = (
        SQLiteStore(str(tmp_path / "tasks.db")) if database is None else PostgresStore(database.url)
    )

    async def scenario() -> tuple[dict[int, int], int]:
        await store.open()
        try:
            await store.create_many([NewTask(_task(f"t{i}", TODO if i % 3 else DONE)) for i in range(7)])
            return await store.status_counts()
        finally:
            await store.close()

    try:
        assert asyncio.run(scenario()) == ({TODO: 4, DONE: 3}, 7)
    finally:
        if database is not None:
            database.drop()
