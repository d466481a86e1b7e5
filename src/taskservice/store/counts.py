"""Exact match counts for recent list filters, kept current from the event stream.

ListTasks returns `total_count` on every page, and counting the matches costs a scan of all of
them: at a million tasks that scan, not the page, is what a request pays. A count is taken once per
filter, together with the sequence of the newest event it reflects; every committed event after
that adjusts it by whether the task matched before and after the change. Every change to a task
appends an event in the same transaction, and each store hands every committed event to the
cache in sequence order (PostgreSQL: every replica's, read back from the log), so the count stays exact.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.paging import TaskFilter
from taskservice.store.base import StoredEvent


@dataclass(slots=True)
class _Count:
    value: int
    as_of: int  # the sequence of the newest event already reflected in `value`
    used: float


class CountCache:
    """At most `capacity` filters; one left unread for `idle_s` is dropped, so its upkeep (one
    filter test per committed event) is paid only for filters someone is paging through."""

    def __init__(self, capacity: int = 32, idle_s: float = 60.0) -> None:
        self._capacity = capacity
        self._idle_s = idle_s
        self._counts: OrderedDict[TaskFilter, _Count] = OrderedDict()

    def get(self, task_filter: TaskFilter) -> int | None:
        entry = self._counts.get(task_filter)
        if entry is None:
            return None
        entry.used = time.monotonic()
        self._counts.move_to_end(task_filter)
        return entry.value

    def get_at(self, task_filter: TaskFilter, sequence: int) -> int | None:
        """The count as of exactly `sequence`, or None when none is kept at that point."""
        entry = self._counts.get(task_filter)
        if entry is None or entry.as_of != sequence:
            return None
        return self.get(task_filter)

    def put(self, task_filter: TaskFilter, value: int, as_of: int) -> None:
        """Remember a count taken in a read that saw every event up to `as_of`."""
        self._counts[task_filter] = _Count(value, as_of, time.monotonic())
        self._counts.move_to_end(task_filter)
        while len(self._counts) > self._capacity:
            self._counts.popitem(last=False)

    def apply(self, events: list[StoredEvent]) -> None:
        """Adjust every count by committed events (in sequence order)."""
        if not self._counts:
            return
        stale = time.monotonic() - self._idle_s
        for task_filter, entry in list(self._counts.items()):
            if entry.used < stale:
                del self._counts[task_filter]
                continue
            for event in events:
                if event.sequence > entry.as_of:
                    entry.value += _delta(task_filter, event)
                    entry.as_of = event.sequence

    def clear(self) -> None:
        self._counts.clear()


def _delta(task_filter: TaskFilter, event: StoredEvent) -> int:
    """Whether the task matches after the event minus whether it did before. A move to the trash
    (DELETED) and out of it (CREATED) carry the task before and after, like an update."""
    if event.is_project:
        return 0
    if event.event_type == pb.EVENT_TYPE_DELETED and event.previous is None:  # a removal for good
        return -int(task_filter.matches(event.task))
    before = event.previous is not None and task_filter.matches(event.previous)
    return int(task_filter.matches(event.task)) - int(before)
