"""The use cases of TaskService: the one place where its rules live.

Transports (gRPC, gRPC-Web) authenticate the caller, hand the request message here and translate
what comes back; stores persist. Validation, access, versioning, idempotency and events are decided
in this module and nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence, Sized
from dataclasses import dataclass

import structlog

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import (
    AlreadyExists,
    Code,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    VersionConflict,
)
from taskservice.domain.events import EventWindow
from taskservice.domain.paging import ORDERS, PageQuery, PageTokens, TaskFilter
from taskservice.domain.validation import PRIORITIES, STATUSES, Checker, Limits, new_task_fields
from taskservice.domain.values import new_task_id, now_us, timestamp_from_us
from taskservice.store.base import CreateResult, EarlierRequest, NewTask, StoredEvent, TaskStore

log = structlog.get_logger(__name__)

UPDATE_PATHS = ("title", "description", "status", "priority", "labels", "assigned_to", "due_date", "metadata")
_BULK_CHUNK = 500


@dataclass(frozen=True, slots=True)
class WatchStart:
    """Where a watch begins: the initial tasks to send (as CREATED) and the sequence they reflect."""

    initial: list[pb.Task]
    sequence: int


class TaskService:
    def __init__(
        self, store: TaskStore, window: EventWindow, page_tokens: PageTokens, limits: Limits | None = None
    ) -> None:
        self._store = store
        self._window = window
        self._tokens = page_tokens
        self.limits = limits or Limits()

    # -- unary --------------------------------------------------------------------------------

    async def create(self, caller: Caller, request: pb.CreateTaskRequest) -> pb.Task:
        item = self._new_task(caller, request)
        (result,) = await self._store.create_many([item])
        return _created(item, result)

    async def get(self, caller: Caller, request: pb.GetTaskRequest) -> pb.Task:
        self._check_id(request.id)
        task = await self._store.get(request.id)
        if task is None or not caller.can_see(task):
            raise NotFound.task(request.id)
        return task

    async def update(self, caller: Caller, request: pb.UpdateTaskRequest) -> pb.Task:
        change = self._update_change(caller, request)
        return await self._store.update(request.id, change, triggered_by=caller.user_id)

    async def delete(self, caller: Caller, request: pb.DeleteTaskRequest) -> pb.Task:
        """Delete a task; returns it as it was."""
        self._check_id(request.id)
        if request.expected_version < 0:
            raise InvalidArgument.field("expected_version", "must not be negative")

        def check(current: pb.Task) -> None:
            _require_visible(caller, current)
            if not (caller.is_admin or current.created_by == caller.user_id):
                raise PermissionDenied(f"only the creator of task {current.id!r} may delete it")
            _require_version(current, request.expected_version)

        return await self._store.delete(request.id, check, triggered_by=caller.user_id)

    async def list(self, caller: Caller, request: pb.ListTasksRequest) -> pb.ListTasksResponse:
        query = self._page_query(caller, request)
        tasks = await self._store.list_page(query)
        has_more = len(tasks) > query.limit - 1
        tasks = tasks[: query.limit - 1]  # the query asks for one extra to learn whether more follow
        response = pb.ListTasksResponse(tasks=tasks, total_count=await self._store.count(query.filter))
        if has_more and tasks:
            response.next_page_token = self._tokens.encode(caller, query, tasks[-1])
        return response

    # -- streams ------------------------------------------------------------------------------

    async def watch(
        self, caller: Caller, request: pb.WatchTasksRequest
    ) -> AsyncIterator[pb.TaskEvent | bytes]:
        """Events the caller may see and the filter matches: the initial state when asked, then every
        later change, in sequence order, each once. Yields TaskEvent messages or their encoding."""
        view = self._watch_view(caller, request)
        if request.after_sequence > 0:
            await self._window.check_resumable(request.after_sequence)
            cursor = request.after_sequence
        elif request.include_initial:
            initial, cursor = await self._store.snapshot(self._visible_filter(caller, request))
            now = timestamp_from_us(now_us())
            for task in initial:
                yield pb.TaskEvent(
                    event_type=pb.EVENT_TYPE_CREATED, task=task, timestamp=now, sequence=cursor
                )
        else:
            # The store's head, not this process's window: with replicas, another one may have
            # committed events this window has not received yet, and they precede this watch.
            cursor = (await self._store.event_bounds()).head
        async for batch in self._window.follow(cursor):
            for event in batch:
                seen = view(event)
                if seen is not None:
                    yield seen

    async def bulk_create(
        self, caller: Caller, requests: AsyncIterable[pb.CreateTaskRequest]
    ) -> pb.BulkCreateResponse:
        """Create tasks in chunks, in stream order. One chunk is written while the next is read, so
        receiving and writing overlap; a failing item is reported by its index and does not stop the
        others. Items are validated a chunk at a time, not as each arrives: reading the stream in a
        tight loop lets grpc hand the event loop many messages per wake-up (docs/performance.md,
        "Known misses")."""
        max_items = self.limits.bulk_items_max
        response = pb.BulkCreateResponse()
        received: list[pb.CreateTaskRequest] = []
        first = 0  # the stream index of received[0]
        writing: asyncio.Task[None] | None = None

        async def write(chunk: list[tuple[int, NewTask]]) -> None:
            results = await self._store.create_many([item for _, item in chunk])
            for (index, item), result in zip(chunk, results, strict=True):
                try:
                    response.tasks.append(_created(item, result))
                except DomainError as error:
                    response.errors.add(index=index, error_message=error.message, code=error.code)

        async def flush() -> None:
            nonlocal writing, received, first
            chunk: list[tuple[int, NewTask]] = []
            for index, request in enumerate(received, first):
                try:
                    chunk.append((index, self._new_task(caller, request)))
                except DomainError as error:
                    response.errors.add(index=index, error_message=error.message, code=error.code)
            first += len(received)
            received = []
            if writing is not None:
                await writing  # chunks are written one after another: tasks stay in stream order
            writing = asyncio.ensure_future(write(chunk)) if chunk else None

        try:
            async for request in requests:
                if first + len(received) >= max_items:
                    raise InvalidArgument.field(
                        "requests", f"a bulk stream may carry at most {max_items} tasks"
                    )
                received.append(request)
                if len(received) >= _BULK_CHUNK:
                    await flush()
            await flush()
            await flush()
        finally:
            if writing is not None:
                # The stream failed while a chunk was being written: it commits regardless (as the
                # chunks before it did); wait for it so its outcome is not lost unobserved.
                await asyncio.wait((writing,))
                if not writing.cancelled():
                    writing.exception()
        response.errors.sort(key=lambda error: error.index)
        response.success_count = len(response.tasks)
        return response

    async def process(
        self, caller: Caller, commands: AsyncIterable[pb.TaskCommand]
    ) -> AsyncIterator[pb.TaskResult]:
        """Answer each command in order with one TaskResult; a failed command does not end the stream."""
        async for command in commands:
            result = pb.TaskResult(command_id=command.command_id)
            try:
                result.task.CopyFrom(await self._run_command(caller, command))
                result.success = True
            except DomainError as error:
                result.error_message = error.message
                result.code = error.code
            except Exception:
                log.exception("process.command_failed", command=command.WhichOneof("command"))
                result.error_message = "internal error"
                result.code = Code.INTERNAL
            yield result

    async def _run_command(self, caller: Caller, command: pb.TaskCommand) -> pb.Task:
        kind = command.WhichOneof("command")
        if kind == "create":
            return await self.create(caller, command.create)
        if kind == "update":
            return await self.update(caller, command.update)
        if kind == "delete":
            return await self.delete(caller, command.delete)
        if kind == "get":
            return await self.get(caller, command.get)
        raise InvalidArgument.field("command", "must set one of create, update, delete or get")

    # -- rules --------------------------------------------------------------------------------

    def _check_id(self, task_id: str, field: str = "id") -> None:
        check = Checker(self.limits)
        check.task_id(field, task_id)
        check.raise_if_any()

    def _new_task(self, caller: Caller, request: pb.CreateTaskRequest) -> NewTask:
        task = new_task_fields(self.limits, request)
        task.id = new_task_id()
        task.status = pb.TASK_STATUS_TODO
        task.created_by = caller.user_id
        task.version = 1
        seconds, micros = divmod(now_us(), 1_000_000)
        task.created_at.seconds = task.updated_at.seconds = seconds
        task.created_at.nanos = task.updated_at.nanos = micros * 1000
        request_hash = b""
        if request.request_id:
            fingerprint = pb.CreateTaskRequest()
            fingerprint.CopyFrom(request)
            fingerprint.ClearField("request_id")
            request_hash = hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).digest()
        return NewTask(task, request.request_id, request_hash)

    def _update_change(
        self, caller: Caller, request: pb.UpdateTaskRequest
    ) -> Callable[[pb.Task], pb.Task | None]:
        """Validate an update request and return the change to apply to the current task."""
        check = Checker(self.limits)
        check.task_id("id", request.id)
        if request.expected_version < 0:
            check.fail("expected_version", "must not be negative")
        patch = pb.Task()
        fields: list[str] = []
        if request.HasField("update_mask") and request.update_mask.paths:
            for path in request.update_mask.paths:
                if path not in UPDATE_PATHS:
                    check.fail("update_mask", f"unknown path {path!r}; allowed: {', '.join(UPDATE_PATHS)}")
                elif path not in fields:
                    fields.append(path)
        else:
            fields = [f for f in UPDATE_PATHS if f not in ("labels", "metadata") and request.HasField(f)]  # type: ignore[arg-type]
            fields += [f for f in ("labels", "metadata") if len(getattr(request, f))]
        for name in fields:
            if name == "title":
                patch.title = check.title("title", request.title)
            elif name == "description":
                check.text("description", request.description, max_len=self.limits.description_max)
                patch.description = request.description
            elif name == "status":
                check.enum("status", request.status, STATUSES, "TaskStatus")
                patch.status = request.status
            elif name == "priority":
                check.enum("priority", request.priority, PRIORITIES, "Priority")
                patch.priority = request.priority
            elif name == "labels":
                patch.labels[:] = check.labels("labels", request.labels)
            elif name == "assigned_to":
                check.text("assigned_to", request.assigned_to, max_len=self.limits.assigned_to_max)
                patch.assigned_to = request.assigned_to
            elif name == "due_date" and request.HasField("due_date"):
                check.timestamp("due_date", request.due_date)
                patch.due_date.CopyFrom(request.due_date)
            elif name == "metadata":
                check.metadata("metadata", request.metadata)
        check.raise_if_any()
        replace_metadata = (
            "metadata" in fields and request.HasField("update_mask") and bool(request.update_mask.paths)
        )

        def change(current: pb.Task) -> pb.Task | None:
            _require_visible(caller, current)
            _require_version(current, request.expected_version)
            updated = pb.Task()
            updated.CopyFrom(current)
            for name in fields:
                if name == "metadata":
                    if replace_metadata:
                        updated.metadata.clear()
                    updated.metadata.update(request.metadata)
                elif name == "labels":
                    updated.labels[:] = patch.labels
                elif name == "due_date":
                    if patch.HasField("due_date"):
                        updated.due_date.CopyFrom(patch.due_date)
                    else:
                        updated.ClearField("due_date")
                else:
                    setattr(updated, name, getattr(patch, name))
            if len(updated.metadata) > self.limits.metadata_max:
                raise InvalidArgument.field(
                    "metadata",
                    f"the merged metadata would have {len(updated.metadata)} entries; at most "
                    f"{self.limits.metadata_max} are allowed",
                )
            if updated == current:
                return None
            updated.version = current.version + 1
            updated.updated_at.CopyFrom(timestamp_from_us(now_us()))
            return updated

        return change

    def _page_query(self, caller: Caller, request: pb.ListTasksRequest) -> PageQuery:
        check = Checker(self.limits)
        if request.page_size < 0:
            check.fail("page_size", "must not be negative")
        size = min(request.page_size or self.limits.page_size_default, self.limits.page_size_max)
        if request.order_by and request.order_by not in ORDERS:
            check.fail("order_by", f"unknown order {request.order_by!r}; use one of {', '.join(ORDERS)}")
        for i, status in enumerate(request.statuses):
            check.enum(f"statuses[{i}]", status, STATUSES, "TaskStatus")
        for i, priority in enumerate(request.priorities):
            check.enum(f"priorities[{i}]", priority, PRIORITIES, "Priority")
        self._check_filter_sizes(
            check, request.labels, statuses=request.statuses, priorities=request.priorities
        )
        check.text("assigned_to", request.assigned_to, max_len=self.limits.assigned_to_max)
        check.text("created_by", request.created_by, max_len=self.limits.assigned_to_max)
        check.raise_if_any()
        query = PageQuery(
            filter=TaskFilter(
                statuses=tuple(sorted(set(request.statuses))),
                priorities=tuple(sorted(set(request.priorities))),
                labels=tuple(sorted(set(request.labels))),
                assigned_to=request.assigned_to,
                created_by=request.created_by,
                visible_to=None if caller.is_admin else caller.user_id,
            ),
            order_by=request.order_by or "created_at",
            descending=request.descending,
            limit=size + 1,
        )
        if request.page_token:
            after = self._tokens.decode(caller, query, request.page_token)
            query = PageQuery(query.filter, query.order_by, query.descending, query.limit, after)
        return query

    def _check_filter_sizes(self, check: Checker, labels: Sequence[str], **others: Sized) -> None:
        most = self.limits.filter_values_max
        for name, values in (("labels", labels), *others.items()):
            if len(values) > most:
                check.fail(name, f"at most {most} values")
        for i, label in enumerate(labels):
            check.text(f"labels[{i}]", label, max_len=self.limits.label_max, min_len=1)

    def _watch_view(
        self, caller: Caller, request: pb.WatchTasksRequest
    ) -> Callable[[StoredEvent], pb.TaskEvent | bytes | None]:
        """What a watcher receives for an event: nothing when neither the task before nor after the
        change matches; the event itself when the caller may see the task now (even if it left the
        filter, so a filtered view stays correct). When the change took the task out of the caller's
        sight (reassigned away from them), they learn only that it left: a DELETED event carrying the
        task as they last saw it, never its new content."""
        check = Checker(self.limits)
        if request.after_sequence < 0:
            check.fail("after_sequence", "must not be negative")
        for i, status in enumerate(request.statuses):
            check.enum(f"statuses[{i}]", status, STATUSES, "TaskStatus")
        self._check_filter_sizes(check, request.labels, statuses=request.statuses)
        if len(request.task_ids) > self.limits.page_size_max:
            check.fail("task_ids", f"at most {self.limits.page_size_max} ids")
        for i, task_id in enumerate(request.task_ids):
            check.task_id(f"task_ids[{i}]", task_id)
        check.raise_if_any()
        ids = frozenset(request.task_ids)
        statuses = frozenset(request.statuses)
        labels = frozenset(request.labels)

        def task_matches(task: pb.Task) -> bool:
            return (
                caller.can_see(task)
                and (not ids or task.id in ids)
                and (not statuses or task.status in statuses)
                and (not labels or not labels.isdisjoint(task.labels))
            )

        def view(event: StoredEvent) -> pb.TaskEvent | bytes | None:
            if task_matches(event.task):
                return event.wire()
            if event.previous is None or not task_matches(event.previous):
                return None
            if caller.can_see(event.task):
                return event.wire()
            departed = pb.TaskEvent()
            departed.CopyFrom(event.message())
            departed.event_type = pb.EVENT_TYPE_DELETED
            departed.task.CopyFrom(event.previous)
            return departed

        return view

    def _visible_filter(self, caller: Caller, request: pb.WatchTasksRequest) -> TaskFilter:
        return TaskFilter(
            statuses=tuple(sorted(set(request.statuses))),
            labels=tuple(sorted(set(request.labels))),
            task_ids=tuple(sorted(set(request.task_ids))),
            visible_to=None if caller.is_admin else caller.user_id,
        )


def _created(item: NewTask, result: CreateResult) -> pb.Task:
    """The task a create answers with. A repeated request_id (AIP-155) gets the task its first
    request created, as it is now (as created, when it is gone); the same key on a different
    request is ALREADY_EXISTS."""
    if not isinstance(result, EarlierRequest):
        return result
    if result.request_hash != item.request_hash:
        raise AlreadyExists(
            f"request_id {item.request_id!r} was already used for a different request; use a new request_id"
        )
    return result.current if result.current is not None else result.created


def _require_visible(caller: Caller, task: pb.Task) -> None:
    if not caller.can_see(task):
        raise NotFound.task(task.id)


def _require_version(task: pb.Task, expected: int) -> None:
    if expected and expected != task.version:
        raise VersionConflict(task.id, expected, task.version)
