"""The SQLite writer's group commit: writes that share a transaction do not undo one another.

Ops run without savepoints (the fast path); one that fails before it changed a row is answered with
its error, one that fails after changing rows makes the writer redo the batch with each op in its own
savepoint. Either way the failing op leaves nothing behind and the others in its batch commit.
Plain creates (no request id) of many calls are inserted together; a failure among them is found by
the redo and fails that create alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import AlreadyExists, NotFound, Unavailable
from taskservice.domain.paging import TaskFilter
from taskservice.domain.values import now_us, timestamp_from_us
from taskservice.store.base import StoredEvent
from taskservice.store.sqlite import SQLiteStore
from taskservice.store.sqlite.statements import append_event
from taskservice.store.sqlite.writer import PlainCreates, WriterTuning, commit_transaction


def _meta_op(key: str, *, fail: str = ""):  # type: ignore[no-untyped-def]
    def op(conn: sqlite3.Connection):  # type: ignore[no-untyped-def]
        if fail == "before":
            raise NotFound(f"{key} before writing")
        conn.execute("INSERT INTO meta VALUES (?, ?)", (key, b"v"))
        if fail == "after":
            raise NotFound(f"{key} after writing")
        return key, []

    return op


async def _one_batch(store: SQLiteStore, ops) -> list[object]:  # type: ignore[no-untyped-def]
    """Submit `ops` without yielding to the event loop in between: the writer takes every write that
    is waiting when it starts a batch, so they commit as one."""
    futures = [store.write(op) for op in ops]
    return list(await asyncio.gather(*futures, return_exceptions=True))


def _keys(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM meta WHERE key LIKE 'k%'")}


@pytest.mark.parametrize("fail", ["before", "after"])
def test_a_failing_write_leaves_nothing_and_its_batch_commits(tmp_path: Path, fail: str) -> None:
    path = tmp_path / "tasks.db"

    async def scenario() -> list[object]:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            return await _one_batch(
                store, [_meta_op("k1"), _meta_op("k2", fail=fail), _meta_op("k3"), _meta_op("k4")]
            )
        finally:
            await store.close()

    results = asyncio.run(scenario())
    assert results[0] == "k1" and results[2] == "k3" and results[3] == "k4"
    assert isinstance(results[1], NotFound)
    assert _keys(path) == {"k1", "k3", "k4"}


def test_a_constraint_violation_fails_only_its_write(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"

    async def scenario() -> list[object]:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            return await _one_batch(store, [_meta_op("k1"), _meta_op("k1"), _meta_op("k2")])
        finally:
            await store.close()

    results = asyncio.run(scenario())
    assert results[0] == "k1" and results[2] == "k2"
    assert isinstance(results[1], AlreadyExists)  # a constraint failure, by kind
    assert _keys(path) == {"k1", "k2"}


def _task(task_id: str) -> pb.Task:
    now = timestamp_from_us(now_us())
    return pb.Task(
        id=task_id, title=task_id, created_by="u", status=pb.TASK_STATUS_TODO, priority=pb.PRIORITY_LOW,
        labels=["w"], created_at=now, updated_at=now, version=1,
    )  # fmt: skip


def _event_op(task_id: str):  # type: ignore[no-untyped-def]
    def op(conn: sqlite3.Connection):  # type: ignore[no-untyped-def]
        return None, [append_event(conn, pb.EVENT_TYPE_UPDATED, _task(task_id), None, "u")]

    return op


def _plain_creates(*ids: str):  # type: ignore[no-untyped-def]
    return [PlainCreates([_task(task_id)]) for task_id in ids]


def test_plain_creates_of_a_batch_are_inserted_together_in_order(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[object], list[StoredEvent]]:
        store = SQLiteStore(str(tmp_path / "tasks.db"))
        events: list[StoredEvent] = []
        store.subscribe(events.extend)
        await store.open()
        try:
            results = await _one_batch(
                store, [*_plain_creates("a", "b"), _event_op("x"), *_plain_creates("c")]
            )
            return results, events
        finally:
            await store.close()

    results, events = asyncio.run(scenario())
    plain = [results[0], results[1], results[3]]
    assert all(isinstance(r, list) for r in plain)
    assert [[task.id for task in r] for r in plain if isinstance(r, list)] == [["a"], ["b"], ["c"]]
    # The creates went in together, ahead of the other write of their batch.
    assert [(e.task.id, e.sequence) for e in events] == [("a", 1), ("b", 2), ("c", 3), ("x", 4)]


def test_a_failing_create_among_merged_ones_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"

    async def scenario() -> tuple[list[object], list[StoredEvent]]:
        store = SQLiteStore(str(path))
        events: list[StoredEvent] = []
        store.subscribe(events.extend)
        await store.open()
        try:
            await store.write(PlainCreates([_task("taken")]))
            results = await _one_batch(store, _plain_creates("a", "taken", "b"))
            return results, events
        finally:
            await store.close()

    results, events = asyncio.run(scenario())
    assert isinstance(results[1], AlreadyExists)  # a constraint failure, by kind
    assert [e.task.id for e in events] == ["taken", "a", "b"]
    assert [e.sequence for e in events] == [1, 2, 3]
    with sqlite3.connect(path) as conn:
        assert sorted(row[0] for row in conn.execute("SELECT id FROM tasks")) == ["a", "b", "taken"]


def test_a_one_off_count_is_not_kept_current(tmp_path: Path) -> None:
    """Counts ListTasks asks for are kept current from the events; a one-off count (the task gauges
    at start-up) is not, so writes do not pay a filter test for it."""

    async def scenario() -> tuple[int, int, int | None, int | None]:
        store = SQLiteStore(str(tmp_path / "tasks.db"))
        await store.open()
        try:
            todo, done = (
                TaskFilter(statuses=(pb.TASK_STATUS_TODO,)),
                TaskFilter(statuses=(pb.TASK_STATUS_DONE,)),
            )
            await store.write(PlainCreates([_task("a")]))
            kept = await store.count(todo)
            once = await store.count(done, keep=False)
            return kept, once, store._counts.get(todo), store._counts.get(done)
        finally:
            await store.close()

    assert asyncio.run(scenario()) == (1, 0, 1, None)


def test_a_write_waits_for_another_connections_lock_off_the_event_loop(tmp_path: Path) -> None:
    """The loop's connection never waits for a lock: a batch that finds the database locked (by a
    tool, another process) is retried from the worker thread, and the loop serves meanwhile."""
    path = tmp_path / "tasks.db"

    async def scenario() -> tuple[bool, object, object]:
        store = SQLiteStore(str(path))
        await store.open()
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            write = store.write(_meta_op("k1"))
            await asyncio.sleep(0.3)  # returns: the loop is not stuck behind the lock
            waited = not write.done()
            read = await store.get("no-such-task")  # reads go on
            other.execute("COMMIT")
            return waited, read, await asyncio.wait_for(write, 10)
        finally:
            other.close()
            await store.close()

    assert asyncio.run(scenario()) == (True, None, "k1")
    assert _keys(path) == {"k1"}


class _Saturated:
    def saturated(self) -> bool:
        return True


def test_a_saturated_loop_gathers_writes_into_fewer_commits(tmp_path: Path) -> None:
    """With the event loop saturated and writes queueing, a batch waits up to `gather_s` for
    company, and starts at once when `gather_enough` writes wait."""
    commits: list[int] = []

    def counted(conn: sqlite3.Connection, *passed: Any) -> Any:
        commits.append(1)
        return commit_transaction(conn, *passed)

    tuning = WriterTuning(gather_s=0.2, load=_Saturated, commit=counted)

    async def queue_behind(store: SQLiteStore, first: str, second: str) -> asyncio.Future[Any]:
        """Write `first`, and `second` once `first`'s batch is committing: it waits behind it, so
        when `first` is answered the writer gathers. Returns `second`'s future."""
        writer = store.writer
        assert writer is not None
        ahead = store.write(_meta_op(first))
        await asyncio.sleep(0)  # the writer takes its batch (scheduled before this task's wake-up)
        assert not writer.queued
        behind = store.write(_meta_op(second))
        await ahead
        assert writer.gathering
        return behind

    async def scenario() -> tuple[int, int, float]:
        store = SQLiteStore(str(tmp_path / "tasks.db"), tuning=tuning)
        await store.open()
        try:
            trickle = [await queue_behind(store, "k0", "k1")]
            for i in range(2, 11):  # arriving one by one while the batch of k1 gathers
                await asyncio.sleep(0.002)
                trickle.append(store.write(_meta_op(f"k{i}")))
            await asyncio.gather(*trickle)
            gathered = len(commits)
            behind = await queue_behind(store, "ka", "kb")
            started = time.monotonic()
            await asyncio.gather(
                behind, *(store.write(_meta_op(f"km{i}")) for i in range(tuning.gather_enough))
            )
            return gathered, len(commits) - gathered, time.monotonic() - started
        finally:
            await store.close()

    gathered, then, took = asyncio.run(scenario())
    assert gathered == 2  # k0, then k1 to k10 in one batch
    assert then == 2 and took < 0.15  # ka, then the rest at once: no waiting out the gathering
    assert len(_keys(tmp_path / "tasks.db")) == 13 + tuning.gather_enough


def test_closing_finishes_the_writes_already_submitted_and_refuses_later_ones(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"

    async def scenario() -> tuple[list[object], object, bool]:
        store = SQLiteStore(str(path))
        await store.open()
        writer = store.writer
        assert writer is not None
        submitted = [store.write(_meta_op(f"k{i}")) for i in range(5)]
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)
        late = writer.submit(_meta_op("k-late"))  # while the close drains: still taken
        await closing
        with pytest.raises(Unavailable):
            writer.submit(_meta_op("k-after"))
        return list(await asyncio.gather(*submitted)), late.result(), store.writer is None

    results, late, gone = asyncio.run(scenario())
    assert results == [f"k{i}" for i in range(5)] and late == "k-late" and gone
    assert _keys(path) == {*(f"k{i}" for i in range(5)), "k-late"}


def _thread_names() -> set[str]:
    names = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            names.add((task / "comm").read_text().strip())
    return names


@pytest.mark.skipif(sys.platform != "linux", reason="thread names in the OS are set with Linux's prctl")
def test_the_stores_threads_carry_their_names_in_the_os(tmp_path: Path) -> None:
    """`top -H` and per-thread CPU figures tell the writer's worker and the checkpointer apart."""

    async def scenario() -> set[str]:
        store = SQLiteStore(str(tmp_path / "tasks.db"))
        await store.open()
        try:
            await store.write(_meta_op("k1"))  # the worker thread has started
            return _thread_names()
        finally:
            await store.close()

    assert {"sqlite-writer", "sqlite-ckpt"} <= asyncio.run(scenario())


def test_a_batch_committed_but_not_yet_published_is_not_behind_the_head(tmp_path: Path) -> None:
    """Between its COMMIT on the worker thread and its publication on the event loop, a batch is
    already readable. A watch starting then takes `event_bounds().head` as its cursor: that head
    must not include the batch, or the watch would never receive its events."""
    committed, release = threading.Event(), threading.Event()

    def slow_to_return(conn: sqlite3.Connection, *passed: Any) -> Any:
        result = commit_transaction(conn, *passed)
        committed.set()
        release.wait(10)
        return result

    async def scenario() -> tuple[int, int, list[int]]:
        store = SQLiteStore(str(tmp_path / "tasks.db"), tuning=WriterTuning(commit=slow_to_return))
        published: list[int] = []
        store.subscribe(lambda events: published.extend(e.sequence for e in events))
        await store.open()
        try:
            write = store.write(_event_op("a"))
            await asyncio.to_thread(committed.wait, 10)
            assert store._db.execute("SELECT max(sequence) FROM events").fetchone()[0] == 1
            during = (await store.event_bounds()).head
            release.set()
            await write
            return during, (await store.event_bounds()).head, published
        finally:
            release.set()
            await store.close()

    assert asyncio.run(scenario()) == (0, 1, [1])
