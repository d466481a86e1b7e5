"""The task cache keeps to its byte budget as well as its count, whatever the size of the tasks."""

from __future__ import annotations

from taskservice.api import task_service_pb2 as pb
from taskservice.store.base import StoredEvent
from taskservice.store.taskcache import TaskCache


def _task(n: int, size: int) -> pb.Task:
    return pb.Task(id=f"t{n}", version=1, title=f"t{n}", description="d" * size)


def test_large_tasks_are_held_up_to_the_byte_budget_oldest_dropped_first() -> None:
    cache = TaskCache(capacity=10_000, budget_bytes=1_000_000)
    for n in range(100):
        cache.put(_task(n, 100_000))  # about 150 KB each in memory
    assert 0 < cache.bytes <= 1_000_000
    assert cache.get("t99") is not None and cache.get("t0") is None


def test_a_task_bigger_than_the_budget_is_not_cached() -> None:
    cache = TaskCache(budget_bytes=10_000)
    cache.put(_task(1, 20_000))
    assert cache.get("t1") is None and cache.bytes == 0


def test_updates_and_deletes_keep_the_byte_count_exact() -> None:
    cache = TaskCache(budget_bytes=1_000_000)
    cache.put(_task(1, 1_000))
    small = cache.bytes
    bigger = pb.Task(id="t1", version=2, title="t1", description="d" * 50_000)
    cache.apply([_event(pb.EVENT_TYPE_UPDATED, bigger)])
    assert cache.get("t1") is bigger and cache.bytes > small
    cache.apply([_event(pb.EVENT_TYPE_DELETED, bigger)])
    assert cache.get("t1") is None and cache.bytes == 0


def _event(event_type: int, task: pb.Task) -> StoredEvent:
    return StoredEvent(
        sequence=1, event_type=event_type, task=task, previous=None, occurred_us=0, triggered_by="u"
    )
