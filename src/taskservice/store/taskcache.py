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


class TaskCache:
    """At most `capacity` tasks, the oldest read dropped first. Tasks are shared, never copied:
    nothing may change a task it got from here (the store's readers only serialize or inspect them)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._tasks: dict[str, pb.Task] = {}

    def get(self, task_id: str) -> pb.Task | None:
        return self._tasks.get(task_id)

    def put(self, task: pb.Task) -> None:
        """Remember a task as a read just found it (a read that saw every commit so far)."""
        tasks = self._tasks
        if len(tasks) >= self._capacity and task.id not in tasks:
            del tasks[next(iter(tasks))]
        tasks[task.id] = task

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
                del tasks[event.task.id]
            elif event.task.version > cached.version:
                tasks[event.task.id] = event.task

    def clear(self) -> None:
        self._tasks.clear()
