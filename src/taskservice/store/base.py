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
from taskservice.domain.paging import PageQuery, SnapshotPart, TaskFilter
from taskservice.domain.values import changed_paths, timestamp_from_us

# The event_type of a project change in the event log. Not an EventType: task watchers never receive
# it; the service reads it to keep memberships current, in sequence order (docs/decisions/0001).
PROJECT_EVENT = 100
_NO_TASK = pb.Task()


@dataclass(slots=True)
class StoredEvent:
    """One committed change. `previous` is the task before an update, so a watcher whose filter the
    task just left still learns about it. A project change (`event_type == PROJECT_EVENT`) carries
    the project after it in `project` (None once deleted) and before it in `project_before` (None
    when just created); its `task` is an empty Task that matches no filter's project rule."""

    sequence: int
    event_type: int
    task: pb.Task
    previous: pb.Task | None
    occurred_us: int
    triggered_by: str
    _message: pb.TaskEvent | None = field(default=None, repr=False)
    _wire: bytes | None = field(default=None, repr=False)
    project: pb.Project | None = None
    project_before: pb.Project | None = None

    @classmethod
    def of_project(
        cls,
        sequence: int,
        after: pb.Project | None,
        before: pb.Project | None,
        occurred_us: int,
        triggered_by: str,
    ) -> StoredEvent:
        return cls(
            sequence,
            PROJECT_EVENT,
            _NO_TASK,
            None,
            occurred_us,
            triggered_by,
            project=after,
            project_before=before,
        )

    @property
    def is_project(self) -> bool:
        return self.event_type == PROJECT_EVENT

    @property
    def project_id(self) -> str:
        """The changed project's id (project events only)."""
        changed = self.project or self.project_before
        return changed.id if changed is not None else ""

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
            if self.event_type == pb.EVENT_TYPE_UPDATED and self.previous is not None:
                self._message.changed_paths.paths.extend(changed_paths(self.previous, self.task))
        return self._message

    def wire(self) -> bytes:
        """The serialized TaskEvent, encoded once for all watchers."""
        if self._wire is None:
            self._wire = self.message().SerializeToString()
        return self._wire


@dataclass(frozen=True, slots=True)
class ProjectEvent:
    """A project change for a store to append to the event log (as PROJECT_EVENT)."""

    project: pb.Project | None  # after the change; None: deleted
    before: pb.Project | None  # None: just created
    triggered_by: str


def decode_event(
    sequence: int, event_type: int, occurred_us: int, triggered_by: str, body: bytes, previous: bytes | None
) -> StoredEvent:
    """An event from its row in the `events` table (task events and project events alike)."""
    if event_type == PROJECT_EVENT:
        return StoredEvent.of_project(
            sequence,
            pb.Project.FromString(body) if body else None,
            pb.Project.FromString(previous) if previous else None,
            occurred_us,
            triggered_by,
        )
    return StoredEvent(
        sequence=sequence,
        event_type=event_type,
        task=pb.Task.FromString(body),
        previous=pb.Task.FromString(previous) if previous is not None else None,
        occurred_us=occurred_us,
        triggered_by=triggered_by,
    )


def project_event_row(
    project: pb.Project | None, before: pb.Project | None
) -> tuple[str, bytes, bytes | None]:
    """(task_id, task, previous) columns of a project event."""
    changed = project or before
    assert changed is not None
    return (
        changed.id,
        project.SerializeToString() if project is not None else b"",
        before.SerializeToString() if before is not None else None,
    )


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
class Page:
    """One page of a list, the count of every task the filter matches, and the sequence of the
    newest event both reflect: a watch from `sequence` continues the page with no gap or repeat."""

    tasks: list[pb.Task]
    total: int
    sequence: int


@dataclass(frozen=True, slots=True)
class EventBounds:
    """`horizon`: events up to here were pruned (replay must start after it); `head`: newest."""

    horizon: int
    head: int


Change = Callable[[pb.Task], "pb.Task | None"]
Check = Callable[[pb.Task], None]
ProjectChange = Callable[[pb.Project], "pb.Project | None"]
ProjectCheck = Callable[[pb.Project, int], bool]
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

    async def update(
        self, task_id: str, change: Change, triggered_by: str, event_type: int = pb.EVENT_TYPE_UPDATED
    ) -> pb.Task:
        """Apply `change` to the current task atomically; None from it means no change (no event).
        The event is `event_type` (DELETED when the change puts the task in the trash, CREATED when it
        takes it out). Raises NotFound for a missing id and whatever `change` raises."""

    async def delete(self, task_id: str, check: Check, triggered_by: str) -> pb.Task:
        """Delete after `check` passes; returns the task as it was."""

    async def list_page(self, query: PageQuery) -> list[pb.Task]:
        """Up to `query.limit` tasks after `query.after`, in the query's order."""

    async def page(self, query: PageQuery) -> Page:
        """`list_page`, `count` and the event head read in one consistent snapshot."""

    async def count(self, task_filter: TaskFilter, *, keep: bool = True) -> int:
        """Tasks matching `task_filter`. `keep=False`: a one-off count, not worth keeping current
        (a store that maintains counts of recent filters from its events skips this one)."""

    async def snapshot(
        self, task_filter: TaskFilter, part: SnapshotPart | None = None
    ) -> tuple[list[pb.Task], int]:
        """Matching tasks in id order (all, or one `part`) and the sequence of the last event they
        reflect, read consistently."""

    async def status_counts(self) -> tuple[dict[int, int], int]:
        """Tasks by status and the sequence of the last event the counts reflect, read consistently
        and without blocking the event loop: it reads a whole index (seconds for a million tasks
        whose file is not in the page cache)."""

    async def events_after(self, sequence: int, limit: int) -> list[StoredEvent]: ...

    async def task_events(self, task_id: str, after: int, limit: int) -> list[StoredEvent]:
        """A task's events after sequence `after`, oldest first. Pruning keeps every event of a task
        that exists (the resume window's retention does not shorten a task's history)."""

    async def event_bounds(self) -> EventBounds: ...

    async def prune(self, events_before_us: int, keep_events: int, keys_before_us: int) -> int:
        """Drop events older than the cutoff or beyond the newest `keep_events` (except those of
        tasks that still exist: their history), and idempotency keys older than theirs; returns how
        many events went."""

    async def purge_trash(self, deleted_before_us: int) -> int:
        """Remove for good the tasks that went to the trash before the cutoff (no events: they left
        every view when they were trashed); returns how many."""

    # -- projects -------------------------------------------------------------------------------

    async def create_project(self, project: pb.Project, triggered_by: str) -> pb.Project:
        """Insert a project with its members, and its project event."""

    async def get_project(self, project_id: str) -> pb.Project | None: ...

    async def update_project(self, project_id: str, change: ProjectChange, triggered_by: str) -> pb.Project:
        """Apply `change` (run in the transaction; None: no change) and append a project event."""

    async def delete_project(self, project_id: str, check: ProjectCheck, triggered_by: str) -> pb.Project:
        """Delete a project. `check(project, live_tasks)` runs in the transaction, raises to refuse,
        and returns whether to delete its live tasks too (a DELETED event each); they and its tasks
        already in the trash are purged. Returns the project as it was."""

    async def list_projects(self, member: str | None, after_id: str, limit: int) -> list[pb.Project]:
        """Projects (of which `member` is a member; None: all) with id > `after_id`, by id."""

    async def count_projects(self, member: str | None) -> int: ...

    async def memberships(self, user: str) -> tuple[dict[str, int], int]:
        """The user's roles by project id, and the sequence of the newest event they reflect."""

    async def project_events(self, after: int, upto: int) -> list[StoredEvent]:
        """Project events with after < sequence <= upto, in order."""

    def subscribe(self, listener: EventListener) -> None:
        """Call `listener` on the event loop with committed events, in sequence order."""
