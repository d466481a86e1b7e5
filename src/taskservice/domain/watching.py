"""What one watch sends: its filters, and the caller's sight as it was at each event.

A watch keeps the caller's project roles as of its cursor and changes them at the project events it
passes, in sequence order, so an event is shown only if the caller could see its task when it
happened (on replay too). When a membership change makes a project's tasks enter or leave the
caller's sight, the watch sends a CREATED or DELETED event for each of them (docs/projects.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.filters import Filter
from taskservice.domain.filters import parse as parse_filter
from taskservice.domain.paging import SnapshotPart, TaskFilter
from taskservice.domain.values import now_us, timestamp_from_us
from taskservice.domain.visibility import Sight, role_of
from taskservice.store.base import StoredEvent

# An initial snapshot is read and sent a part at a time, so a watcher that stops reading holds one
# part, not every task it matches: at most this many tasks, and no more than start within this many
# encoded bytes (docs/security.md, "Bounds").
SNAPSHOT_PART_TASKS = 500
SNAPSHOT_PART_BYTES = 256 * 1024
FIRST_PART = SnapshotPart("", SNAPSHOT_PART_TASKS, SNAPSHOT_PART_BYTES)


def next_part(part: SnapshotPart, tasks: Sequence[pb.Task]) -> SnapshotPart | None:
    """The part after `tasks` (what the store answered for `part`), or None when none can follow:
    fewer tasks than the limit, and fewer bytes than the bound (which cuts only a part that reached
    it)."""
    if not tasks:
        return None
    if len(tasks) < part.limit and sum(task.ByteSize() for task in tasks) < part.max_bytes:
        return None
    return SnapshotPart(tasks[-1].id, part.limit, part.max_bytes)


def initial_events(tasks: Sequence[pb.Task], sequence: int) -> Iterator[pb.TaskEvent]:
    """A snapshot part as CREATED events numbered with the sequence it reflects."""
    now = timestamp_from_us(now_us())
    for task in tasks:
        yield pb.TaskEvent(event_type=pb.EVENT_TYPE_CREATED, task=task, timestamp=now, sequence=sequence)


class Feed:
    """A watch's event batches taken one event at a time up to a given sequence: while its snapshot
    is sent part by part, the changes up to each part's sequence go out before that part. It holds
    at most one batch."""

    def __init__(self, batches: AsyncIterator[list[StoredEvent]], cursor: int) -> None:
        self._batches = batches
        self._cursor = cursor
        self._held: deque[StoredEvent] = deque()

    async def next(self, upto: int) -> StoredEvent | None:
        """The next event numbered `upto` or lower; None once every such event was taken."""
        while not self._held:
            if self._cursor >= upto:
                return None
            batch = await anext(self._batches)
            self._held.extend(batch)
            self._cursor = batch[-1].sequence
        return self._held.popleft() if self._held[0].sequence <= upto else None

    def rest(self) -> list[StoredEvent]:
        """The events taken from the batches and not yet returned."""
        rest = list(self._held)
        self._held.clear()
        return rest


@dataclass(frozen=True, slots=True)
class WatchScope:
    """The filters of a WatchTasksRequest (every task when all are empty), visibility aside."""

    task_ids: frozenset[str]
    statuses: frozenset[int]
    labels: frozenset[str]
    project_ids: frozenset[str]
    expression: Filter | None = None  # the AIP-160 filter, `now` resolved when the watch starts

    @classmethod
    def of(cls, request: pb.WatchTasksRequest) -> WatchScope:
        """The request's scope; INVALID_ARGUMENT naming the column for a filter it cannot read."""
        return cls(
            frozenset(request.task_ids),
            frozenset(request.statuses),
            frozenset(request.labels),
            frozenset(request.project_ids),
            parse_filter(request.filter),
        )

    def matches(self, task: pb.Task) -> bool:
        return (
            (not self.task_ids or task.id in self.task_ids)
            and (not self.statuses or task.status in self.statuses)
            and (not self.labels or not self.labels.isdisjoint(task.labels))
            and (not self.project_ids or task.project_id in self.project_ids)
            and (self.expression is None or self.expression.matches(task))
        )

    def task_filter(self, sight: Sight | None) -> TaskFilter:
        """The same scope as a store filter, for the initial snapshot."""
        return TaskFilter(
            statuses=tuple(sorted(self.statuses)),
            labels=tuple(sorted(self.labels)),
            task_ids=tuple(sorted(self.task_ids)),
            project_ids=tuple(sorted(self.project_ids)),
            visible_to=sight,
            expression=self.expression,
        )


class WatchView:
    """The events one watcher receives, given its scope and its roles as of the cursor."""

    def __init__(self, caller: Caller, scope: WatchScope, roles: dict[str, int]) -> None:
        self._caller = caller
        self.scope = scope
        self._roles = dict(roles)
        self.sight: Sight | None = None if caller.is_admin else Sight(caller.user_id, frozenset(roles))

    def _shown(self, task: pb.Task) -> bool:
        return (self.sight is None or self.sight.sees(task)) and self.scope.matches(task)

    def task_event(self, event: StoredEvent) -> pb.TaskEvent | bytes | None:
        """Nothing when neither the task before nor after the change is shown; the event itself when
        the caller may see the task now (even if it left the filter, so a filtered view stays
        correct). When the change took the task out of the caller's sight (reassigned away, moved to
        another project), they learn only that it left: a DELETED event carrying the task as they
        last saw it, never its new content."""
        if self._shown(event.task):
            return event.wire()
        if event.previous is None or not self._shown(event.previous):
            return None
        if self.sight is None or self.sight.sees(event.task):
            return event.wire()
        departed = pb.TaskEvent()
        departed.CopyFrom(event.message())
        departed.event_type = pb.EVENT_TYPE_DELETED
        departed.task.CopyFrom(event.previous)
        return departed

    def membership(self, event: StoredEvent) -> tuple[Sight, Sight] | None:
        """Apply a project event to the watcher's roles; returns (sight before, sight after) when the
        caller joined or left the project, so its tasks entered or left their sight."""
        if self.sight is None:
            return None
        user = self._caller.user_id
        before, after = role_of(event.project_before, user), role_of(event.project, user)
        if after:
            self._roles[event.project_id] = after
        else:
            self._roles.pop(event.project_id, None)
        if bool(before) == bool(after):
            return None
        old, self.sight = self.sight, Sight(user, frozenset(self._roles))
        return old, self.sight

    def crossed(
        self, event: StoredEvent, sights: tuple[Sight, Sight], tasks: Sequence[pb.Task]
    ) -> Iterator[pb.TaskEvent]:
        """CREATED for each of the project's `tasks` that entered the caller's sight, DELETED for each
        that left it, numbered with the membership event's sequence."""
        old, new = sights
        when = timestamp_from_us(event.occurred_us)
        for task in tasks:
            was, now = old.sees(task), new.sees(task)
            if was != now and self.scope.matches(task):
                yield pb.TaskEvent(
                    event_type=pb.EVENT_TYPE_CREATED if now else pb.EVENT_TYPE_DELETED,
                    task=task,
                    timestamp=when,
                    triggered_by=event.triggered_by,
                    sequence=event.sequence,
                )
