"""Recently read tasks, kept current from the event stream, so a GetTask of a task read before costs
no SQLite statement (a primary-key lookup and the decoding of its row, a sizeable part of a GetTask).

Every change to a task commits an event, and the store hands committed events here in sequence
order, on the event loop that also reads. A read that lands between a commit and its event being
handed over sees the newer row first; the event then brings an equal version, so only a newer
version replaces what is cached, and a deletion always removes it. This holds while one process
writes the database, which the event window and the list counts already assume.
"""

from __future__ import annotations

from taskservice.api import task_service_pb2 as pb
from taskservice.store.base import StoredEvent

DEFAULT_CAPACITY = 10_000
DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024
# A task in memory takes more than its encoding (Python and protobuf objects): the same estimate as
# the event window's.
_MEMORY_PER_ENCODED_BYTE = 1.5
_MEMORY_PER_TASK = 512


def _cost(task: pb.Task) -> int:
    return int(task.ByteSize() * _MEMORY_PER_ENCODED_BYTE) + _MEMORY_PER_TASK


class TaskCache:
    """At most `capacity` tasks and about `budget_bytes` of them, the oldest read dropped first.
    Tasks are shared, never copied: nothing may change a task it got from here (the store's readers
    only serialize or inspect them)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self._capacity = capacity
        self._budget = budget_bytes
        self._tasks: dict[str, pb.Task] = {}
        self._costs: dict[str, int] = {}
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """The estimated bytes the cached tasks hold now (at most the budget)."""
        return self._bytes

    def get(self, task_id: str) -> pb.Task | None:
        return self._tasks.get(task_id)

    def put(self, task: pb.Task) -> None:
        """Remember a task as a read just found it (a read that saw every commit so far)."""
        cost = _cost(task)
        if cost > self._budget:
            return
        self._forget(task.id)
        tasks = self._tasks
        while tasks and (len(tasks) >= self._capacity or self._bytes + cost > self._budget):
            self._forget(next(iter(tasks)))
        tasks[task.id] = task
        self._costs[task.id] = cost
        self._bytes += cost

    def _forget(self, task_id: str) -> None:
        if self._tasks.pop(task_id, None) is not None:
            self._bytes -= self._costs.pop(task_id)

    def apply(self, events: list[StoredEvent]) -> None:
        tasks = self._tasks
        if not tasks:
            return
        for event in events:
            if event.is_project:
                continue
            cached = tasks.get(event.task.id)
            if cached is None:
                continue
            if event.event_type == pb.EVENT_TYPE_DELETED:
                self._forget(event.task.id)
            elif event.task.version > cached.version:
                self._forget(event.task.id)
                self.put(event.task)

    def clear(self) -> None:
        self._tasks.clear()
        self._costs.clear()
        self._bytes = 0
