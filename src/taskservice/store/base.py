"""The store interface: what the service layer needs from persistence, and nothing more.

A store keeps tasks and the event log in one transactional unit: every change to a task appends its
event in the same transaction, numbered by a `sequence` whose order is commit order. Business rules
(validation, access, versions) stay in the service layer; the store runs the service's `change`
callback inside the transaction that reads and writes the task, so a check and its write are atomic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.paging import PageQuery, TaskFilter
from taskservice.domain.values import timestamp_from_us


@dataclass(slots=True)
class StoredEvent:
    """One committed change. `previous` is the task before an update, so a watcher whose filter the
    task just left still learns about it."""

    sequence: int
    event_type: int
    task: pb.Task
    previous: pb.Task | None
    occurred_us: int
    triggered_by: str
    _message: pb.TaskEvent | None = field(default=None, repr=False)
    _wire: bytes | None = field(default=None, repr=False)

    def message(self) -> pb.TaskEvent:
        """The TaskEvent, built once and shared by every watcher."""
        if self._message is None:
            self._message = pb.TaskEvent(
                event_type=self.event_type,  # type: ignore[arg-type]
                task=self.task,
                timestamp=timestamp_from_us(self.occurred_us),
                triggered_by=self.triggered_by,
                sequence=self.sequence,
            )
        return self._message

    def wire(self) -> bytes:
        """The serialized TaskEvent, encoded once for all watchers."""
        if self._wire is None:
            self._wire = self.message().SerializeToString()
        return self._wire


@dataclass(slots=True)  # not frozen: a frozen __init__ is slower, and one runs per created task
class NewTask:
    """A task to insert, with the idempotency key that guards it (empty: none)."""

    task: pb.Task
    request_id: str = ""
    request_hash: bytes = b""


@dataclass(frozen=True, slots=True)
class EarlierRequest:
    """What a repeated (created_by, request_id) found: the fingerprint of the request that first
    used the key, the task that request created as it was then, and as it is now (None when it is
    gone). The service decides what the repeat gets."""

    request_hash: bytes
    created: pb.Task
    current: pb.Task | None


CreateResult = pb.Task | EarlierRequest


@dataclass(frozen=True, slots=True)
class EventBounds:
    """`horizon`: events up to here were pruned (replay must start after it); `head`: newest."""

    horizon: int
    head: int


Change = Callable[[pb.Task], "pb.Task | None"]
Check = Callable[[pb.Task], None]
EventListener = Callable[[list[StoredEvent]], None]


class TaskStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise Unavailable when the store cannot serve."""

    async def secret(self, name: str) -> bytes:
        """A random 32-byte key shared by every process on this store, created on first use."""

    async def create_many(self, items: list[NewTask]) -> list[CreateResult]:
        """Insert tasks in one transaction; an item whose (created_by, request_id) was used before is
        not inserted and comes back as the EarlierRequest found. Results are in item order."""

    async def get(self, task_id: str) -> pb.Task | None: ...

    async def update(self, task_id: str, change: Change, triggered_by: str) -> pb.Task:
        """Apply `change` to the current task atomically; None from it means no change (no event).
        Raises NotFound for a missing id and whatever `change` raises."""

    async def delete(self, task_id: str, check: Check, triggered_by: str) -> pb.Task:
        """Delete after `check` passes; returns the task as it was."""

    async def list_page(self, query: PageQuery) -> list[pb.Task]:
        """Up to `query.limit` tasks after `query.after`, in the query's order."""

    async def count(self, task_filter: TaskFilter, *, keep: bool = True) -> int:
        """Tasks matching `task_filter`. `keep=False`: a one-off count, not worth keeping current
        (a store that maintains counts of recent filters from its events skips this one)."""

    async def snapshot(self, task_filter: TaskFilter) -> tuple[list[pb.Task], int]:
        """Matching tasks and the sequence of the last event they reflect, read consistently."""

    async def status_counts(self) -> tuple[dict[int, int], int]:
        """Tasks by status and the sequence of the last event the counts reflect, read consistently
        and without blocking the event loop: it reads a whole index (seconds for a million tasks
        whose file is not in the page cache)."""

    async def events_after(self, sequence: int, limit: int) -> list[StoredEvent]: ...

    async def event_bounds(self) -> EventBounds: ...

    async def prune(self, events_before_us: int, keep_events: int, keys_before_us: int) -> int:
        """Drop events older than the cutoff or beyond the newest `keep_events`, and idempotency keys
        older than theirs; returns how many events went."""

    def subscribe(self, listener: EventListener) -> None:
        """Call `listener` on the event loop with committed events, in sequence order."""
