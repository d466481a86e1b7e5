"""The SQLite store's cache of read tasks: a task read once is served without a statement, and every
committed change reaches it, so a read never returns a task older than the last acknowledged write."""

from __future__ import annotations

import asyncio
from pathlib import Path

from taskservice.api import task_service_pb2 as pb
from taskservice.store.base import NewTask, StoredEvent
from taskservice.store.sqlite import SQLiteStore
from taskservice.store.taskcache import TaskCache


def _task(task_id: str, version: int, title: str = "t") -> pb.Task:
    return pb.Task(id=task_id, title=title, version=version, created_by="alice")


def _event(event_type: int, task: pb.Task, sequence: int = 1) -> StoredEvent:
    return StoredEvent(sequence, event_type, task, None, 0, "alice")


def test_reads_see_every_committed_change_and_repeat_reads_skip_sqlite(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[pb.Task | None], list[str]]:
        store = SQLiteStore(str(tmp_path / "tasks.db"))
        await store.open()
        statements: list[str] = []
        try:
            (created,) = await store.create_many([NewTask(_task("a", 1, "first"))])
            assert isinstance(created, pb.Task)
            seen = [await store.get("a")]
            assert store._reader is not None
            store._reader.set_trace_callback(statements.append)
            seen.append(await store.get("a"))  # from the cache: no statement

            def retitle(current: pb.Task) -> pb.Task:
                updated = pb.Task()
                updated.CopyFrom(current)
                updated.title, updated.version = "second", current.version + 1
                return updated

            await store.update("a", retitle, "alice")
            seen.append(await store.get("a"))
            await store.delete("a", lambda _: None, "alice")
            seen.append(await store.get("a"))
            return seen, statements
        finally:
            await store.close()

    seen, statements = asyncio.run(scenario())
    assert [(t.title, t.version) if t else None for t in seen] == [
        ("first", 1),
        ("first", 1),
        ("second", 2),
        None,
    ]
    # The repeated read and the read after the update were answered from the cache; only the read
    # after the delete (the task gone from the cache with its DELETED event) asked SQLite.
    assert len([s for s in statements if s.startswith("SELECT body FROM tasks")]) == 1


def test_an_event_older_than_the_cached_task_does_not_replace_it() -> None:
    """A read between a commit and the hand-over of its event already saw the newer row."""
    cache = TaskCache()
    cache.put(_task("a", 3, "newest"))
    cache.apply([_event(pb.EVENT_TYPE_UPDATED, _task("a", 2, "older"))])
    assert cache.get("a") == _task("a", 3, "newest")
    cache.apply([_event(pb.EVENT_TYPE_UPDATED, _task("a", 4, "newer"))])
    assert cache.get("a") == _task("a", 4, "newer")
    cache.apply([_event(pb.EVENT_TYPE_DELETED, _task("a", 4))])
    assert cache.get("a") is None


def test_only_tasks_already_read_are_kept_and_the_oldest_read_goes_first() -> None:
    cache = TaskCache(capacity=2)
    cache.apply([_event(pb.EVENT_TYPE_CREATED, _task("new", 1))])
    assert cache.get("new") is None  # creating a task does not fill the cache
    for task_id in ("a", "b", "c"):
        cache.put(_task(task_id, 1))
    assert [cache.get(i) is not None for i in ("a", "b", "c")] == [False, True, True]
