"""A TaskStore wrapper that times every store call and, when tracing is on, opens a span for it.

It wraps whichever store `open_store` chose, so every store gets the same
`taskservice_store_operation_seconds{operation}` histogram and `store.<operation>` spans.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import DomainError, Unavailable
from taskservice.domain.paging import PageQuery, SnapshotPart, TaskFilter
from taskservice.store.base import (
    Change,
    Check,
    CreateResult,
    EventBounds,
    EventListener,
    NewTask,
    Page,
    ProjectChange,
    ProjectCheck,
    StoredEvent,
    TaskStore,
)
from taskservice.telemetry import metrics, tracing

T = TypeVar("T")


class InstrumentedStore:
    def __init__(self, store: TaskStore, tracer: Any | None = None) -> None:
        self.inner = store
        self._tracer = tracer
        self._timers: dict[str, Callable[[float], None]] = {}

    async def _timed(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        observe = self._timers.get(operation)
        if observe is None:
            observe = self._timers[operation] = metrics.store_seconds.labels(operation).observe
        start = time.perf_counter()
        try:
            if self._tracer is None:
                return await call()
            with tracing.store_span(self._tracer, operation):
                return await call()
        except Exception as error:
            if isinstance(error, Unavailable) or not isinstance(error, DomainError):
                metrics.store_failures.labels(operation).inc()
            raise
        finally:
            observe(time.perf_counter() - start)

    def __getattr__(self, name: str) -> Any:
        """Anything else a particular store offers passes through, untimed."""
        return getattr(self.inner, name)

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping)

    async def secret(self, name: str) -> bytes:
        return await self.inner.secret(name)

    async def create_many(self, items: list[NewTask]) -> list[CreateResult]:
        return await self._timed("create_many", lambda: self.inner.create_many(items))

    async def get(self, task_id: str) -> pb.Task | None:
        return await self._timed("get", lambda: self.inner.get(task_id))

    async def update(
        self, task_id: str, change: Change, triggered_by: str, event_type: int = pb.EVENT_TYPE_UPDATED
    ) -> pb.Task:
        return await self._timed(
            "update", lambda: self.inner.update(task_id, change, triggered_by, event_type)
        )

    async def delete(self, task_id: str, check: Check, triggered_by: str) -> pb.Task:
        return await self._timed("delete", lambda: self.inner.delete(task_id, check, triggered_by))

    async def list_page(self, query: PageQuery) -> list[pb.Task]:
        return await self._timed("list_page", lambda: self.inner.list_page(query))

    async def page(self, query: PageQuery) -> Page:
        return await self._timed("page", lambda: self.inner.page(query))

    async def count(self, task_filter: TaskFilter, *, keep: bool = True) -> int:
        return await self._timed("count", lambda: self.inner.count(task_filter, keep=keep))

    async def status_counts(self) -> tuple[dict[int, int], int]:
        return await self._timed("status_counts", self.inner.status_counts)

    async def snapshot(
        self, task_filter: TaskFilter, part: SnapshotPart | None = None
    ) -> tuple[list[pb.Task], int]:
        return await self._timed("snapshot", lambda: self.inner.snapshot(task_filter, part))

    async def events_after(self, sequence: int, limit: int) -> list[StoredEvent]:
        return await self._timed("events_after", lambda: self.inner.events_after(sequence, limit))

    async def task_events(self, task_id: str, after: int, limit: int) -> list[StoredEvent]:
        return await self._timed("task_events", lambda: self.inner.task_events(task_id, after, limit))

    async def event_bounds(self) -> EventBounds:
        return await self._timed("event_bounds", self.inner.event_bounds)

    async def prune(self, events_before_us: int, keep_events: int, keys_before_us: int) -> int:
        return await self._timed(
            "prune", lambda: self.inner.prune(events_before_us, keep_events, keys_before_us)
        )

    async def purge_trash(self, deleted_before_us: int) -> int:
        return await self._timed("purge_trash", lambda: self.inner.purge_trash(deleted_before_us))

    async def create_project(self, project: pb.Project, triggered_by: str) -> pb.Project:
        return await self._timed("create_project", lambda: self.inner.create_project(project, triggered_by))

    async def get_project(self, project_id: str) -> pb.Project | None:
        return await self._timed("get_project", lambda: self.inner.get_project(project_id))

    async def update_project(self, project_id: str, change: ProjectChange, triggered_by: str) -> pb.Project:
        return await self._timed(
            "update_project", lambda: self.inner.update_project(project_id, change, triggered_by)
        )

    async def delete_project(self, project_id: str, check: ProjectCheck, triggered_by: str) -> pb.Project:
        return await self._timed(
            "delete_project", lambda: self.inner.delete_project(project_id, check, triggered_by)
        )

    async def list_projects(self, member: str | None, after_id: str, limit: int) -> list[pb.Project]:
        return await self._timed("list_projects", lambda: self.inner.list_projects(member, after_id, limit))

    async def count_projects(self, member: str | None) -> int:
        return await self._timed("count_projects", lambda: self.inner.count_projects(member))

    async def memberships(self, user: str) -> tuple[dict[str, int], int]:
        return await self._timed("memberships", lambda: self.inner.memberships(user))

    async def project_events(self, after: int, upto: int) -> list[StoredEvent]:
        return await self._timed("project_events", lambda: self.inner.project_events(after, upto))

    def subscribe(self, listener: EventListener) -> None:
        self.inner.subscribe(listener)
