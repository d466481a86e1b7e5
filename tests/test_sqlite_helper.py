"""The SQLite writer's helper process: big batches of plain creates (bulk chunks) are committed by
`bulk_process`, in the writer's order; when the helper fails or dies, the writer inserts them itself."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import AlreadyExists
from taskservice.store.base import EarlierRequest, NewTask, StoredEvent
from taskservice.store.sqlite import SQLiteStore
from taskservice.store.sqlite.writer import WriterTuning
from tests.test_sqlite_writer import _task


def _chunk(prefix: str, count: int = WriterTuning().bulk_process_min_tasks) -> list[NewTask]:
    return [NewTask(_task(f"{prefix}{i:04d}")) for i in range(count)]


def _helper_pid(store: SQLiteStore) -> int | None:
    writer = store.writer
    assert writer is not None and writer.bulk_process is not None
    return writer.bulk_process.pid


def _stored(path: Path) -> tuple[int, int, int]:
    with sqlite3.connect(path) as conn:
        tasks, labels, events = (
            int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("tasks", "task_labels", "events")
        )
        return tasks, labels, events


def test_a_bulk_chunk_is_committed_by_the_helper_in_sequence_order(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"

    async def scenario() -> tuple[list[pb.Task | EarlierRequest], list[StoredEvent], int | None]:
        store = SQLiteStore(str(path))
        events: list[StoredEvent] = []
        store.subscribe(events.extend)
        await store.open()
        try:
            small = await store.create_many(_chunk("s", 3))  # below the threshold: on the event loop
            big = await store.create_many(_chunk("b"))
            return [*small, *big], events, _helper_pid(store)
        finally:
            await store.close()

    results, events, pid = asyncio.run(scenario())
    assert pid is not None
    assert all(isinstance(r, pb.Task) for r in results)
    assert [e.sequence for e in events] == list(range(1, 3 + WriterTuning().bulk_process_min_tasks + 1))
    assert [e.task.id for e in events] == [t.id for t in results if isinstance(t, pb.Task)]
    assert _stored(path) == (3 + WriterTuning().bulk_process_min_tasks,) * 3
    # The helper ended with the store.
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_a_dead_helper_is_replaced_and_its_batch_written_by_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"

    async def scenario() -> tuple[list[pb.Task | EarlierRequest], list[StoredEvent], int | None, int | None]:
        store = SQLiteStore(str(path))
        events: list[StoredEvent] = []
        store.subscribe(events.extend)
        await store.open()
        try:
            first = _helper_pid(store)
            assert first is not None
            os.kill(first, signal.SIGKILL)
            await asyncio.to_thread(os.waitpid, first, 0)
            written = await store.create_many(_chunk("a"))  # the helper is gone: the writer inserts
            written += await store.create_many(_chunk("b"))  # a new helper
            return written, events, first, _helper_pid(store)
        finally:
            await store.close()

    results, events, first, second = asyncio.run(scenario())
    assert all(isinstance(r, pb.Task) for r in results)
    assert second is not None and second != first
    assert [e.sequence for e in events] == list(range(1, 2 * WriterTuning().bulk_process_min_tasks + 1))
    assert _stored(path) == (2 * WriterTuning().bulk_process_min_tasks,) * 3


def test_a_helper_batch_that_fails_fails_as_without_the_helper(tmp_path: Path) -> None:
    """The helper rolls its transaction back and the writer runs the batch itself, so the outcome is
    the writer's own: a create call whose insert fails fails whole, and nothing of it is stored."""
    path = tmp_path / "tasks.db"

    async def scenario() -> tuple[BaseException | None, list[pb.Task | EarlierRequest]]:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            await store.create_many([NewTask(_task("taken"))])
            chunk = _chunk("c")
            chunk[10] = NewTask(_task("taken"))
            failure: BaseException | None = None
            try:
                await store.create_many(chunk)
            except AlreadyExists as error:
                failure = error
            return failure, await store.create_many(_chunk("d"))  # the helper still serves
        finally:
            await store.close()

    failure, after = asyncio.run(scenario())
    assert isinstance(failure, AlreadyExists)
    assert all(isinstance(r, pb.Task) for r in after)
    assert _stored(path) == (1 + WriterTuning().bulk_process_min_tasks,) * 3
