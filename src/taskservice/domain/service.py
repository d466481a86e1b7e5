"""The use cases of TaskService: the one place where its rules live.

Transports (gRPC, gRPC-Web) authenticate the caller, hand the request message here and translate
what comes back; stores persist. Validation, access, versioning, idempotency and events are decided
in this module and nowhere else.

Longer than most modules: every task use case is here by design (the one place for the rules);
projects (projects.py), placement, visibility, watching, filters and validation live in modules of
their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence, Sized
from dataclasses import dataclass
from typing import TypeVar

import structlog

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.bulk import fitted
from taskservice.domain.errors import (
    Aborted,
    AlreadyExists,
    BulkInterrupted,
    Code,
    DomainError,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    VersionConflict,
)
from taskservice.domain.events import EventWindow
from taskservice.domain.filters import parse as parse_filter
from taskservice.domain.filters import parse_query
from taskservice.domain.paging import (
    PageQuery,
    PageTokens,
    SnapshotPart,
    TaskFilter,
    history_token,
    history_token_decode,
    parse_order,
)
from taskservice.domain.placement import Placement
from taskservice.domain.projects import Memberships, ProjectService
from taskservice.domain.validation import PRIORITIES, STATUSES, Checker, Limits, new_task_fields
from taskservice.domain.values import CHANGEABLE_PATHS, new_task_id, now_us, timestamp_from_us
from taskservice.domain.visibility import Permissions, Sight
from taskservice.domain.watching import FIRST_PART, Feed, WatchScope, WatchView, initial_events, next_part
from taskservice.store.base import CreateResult, EarlierRequest, NewTask, StoredEvent, TaskStore

log = structlog.get_logger(__name__)
T = TypeVar("T")

UPDATE_PATHS = CHANGEABLE_PATHS  # what an update may change, as its mask's paths
_PLACEMENT = ("project_id", "parent_id")
_BULK_CHUNK = 500
_LOG_READ = 1000  # events read from the log at once
BATCH_ITEMS_MAX = 1_000  # BatchCreateTasks: one request message, so a bounded one (CONTRACT §5.3)


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
        self.memberships = Memberships(store)
        store.subscribe(self.memberships.apply)
        self.projects = ProjectService(store, self.memberships, page_tokens, self.limits)
        self._placement = Placement(store, self.limits)

    async def permissions(self, caller: Caller) -> Permissions:
        """The caller with their project roles (none to look up for an admin)."""
        if caller.is_admin:
            return Permissions(caller)
        return Permissions(caller, await self.memberships.roles(caller.user_id))

    async def _as_caller(self, caller: Caller, attempt: Callable[[Permissions], Awaitable[T]]) -> T:
        """Run `attempt` with the caller's cached roles; if it is refused (NOT_FOUND, PERMISSION_DENIED)
        and the store knows newer roles (a change on another replica not yet seen here), once more
        with those."""
        perms = await self.permissions(caller)
        try:
            return await attempt(perms)
        except (NotFound, PermissionDenied):
            if caller.is_admin:
                raise
            roles = await self.memberships.refresh(caller.user_id)
            if roles == perms.roles:
                raise
        return await attempt(Permissions(caller, roles))

    # -- unary --------------------------------------------------------------------------------

    async def create(self, caller: Caller, request: pb.CreateTaskRequest) -> pb.Task:
        item = self._new_task(caller, request)
        if item.task.project_id or item.task.parent_id:

            async def place(perms: Permissions) -> None:
                await self._check_placement(perms, item.task)

            await self._as_caller(caller, place)
        (result,) = await self._store.create_many([item])
        return _created(item, result)

    async def get(self, caller: Caller, request: pb.GetTaskRequest) -> pb.Task:
        self._check_id(request.id)
        task = await self._store.get(request.id)
        if task is None or (task.HasField("delete_time") and not request.show_deleted):
            raise NotFound.task(request.id)

        async def read(perms: Permissions) -> pb.Task:
            if not perms.can_see(task):
                raise NotFound.task(request.id)
            return task

        return await self._as_caller(caller, read)

    async def update(self, caller: Caller, request: pb.UpdateTaskRequest) -> pb.Task:
        return await self._as_caller(caller, lambda perms: self._update(perms, request))

    async def _update(self, perms: Permissions, request: pb.UpdateTaskRequest) -> pb.Task:
        caller = perms.caller
        change, fields = self._update_change(perms, request)
        moving = [name for name in _PLACEMENT if name in fields]
        if moving:
            # Where a task goes is checked against the task as read here; the change then requires
            # the task still to be where it was, so a concurrent move cannot slip past the checks.
            placed = await self._placed(perms, request, moving)
            checked = change

            def change(current: pb.Task) -> pb.Task | None:
                if (current.project_id, current.parent_id) != placed:
                    raise Aborted(f"task {current.id!r} was moved meanwhile; re-read it and retry")
                return checked(current)

        return await self._store.update(request.id, change, triggered_by=caller.user_id)

    async def delete(self, caller: Caller, request: pb.DeleteTaskRequest) -> pb.Task:
        """Move a task to the trash (a DELETED event); returns it, its `delete_time` set."""
        self._check_id(request.id)
        if request.expected_version < 0:
            raise InvalidArgument.field("expected_version", "must not be negative")
        return await self._as_caller(caller, lambda perms: self._trash(perms, request))

    async def _trash(self, perms: Permissions, request: pb.DeleteTaskRequest) -> pb.Task:
        def trash(current: pb.Task) -> pb.Task | None:
            _require_visible(perms, current)
            if not perms.can_delete(current):
                raise PermissionDenied(f"you may read and update task {current.id!r} but not delete it")
            _require_version(current, request.expected_version)
            trashed = pb.Task()
            trashed.CopyFrom(current)
            trashed.delete_time.CopyFrom(timestamp_from_us(now_us()))
            return trashed

        return await self._store.update(
            request.id, trash, triggered_by=perms.caller.user_id, event_type=pb.EVENT_TYPE_DELETED
        )

    async def undelete(self, caller: Caller, request: pb.UndeleteTaskRequest) -> pb.Task:
        """Take a task out of the trash (a CREATED event); a task not in the trash is returned as is."""
        self._check_id(request.id)
        return await self._as_caller(caller, lambda perms: self._restore(perms, request))

    async def _restore(self, perms: Permissions, request: pb.UndeleteTaskRequest) -> pb.Task:
        def restore(current: pb.Task) -> pb.Task | None:
            if not perms.can_see(current):
                raise NotFound.task(current.id)
            if not perms.can_delete(current):
                raise PermissionDenied(f"you may read and update task {current.id!r} but not restore it")
            if not current.HasField("delete_time"):
                return None
            restored = pb.Task()
            restored.CopyFrom(current)
            restored.ClearField("delete_time")
            restored.version = current.version + 1
            restored.updated_at.CopyFrom(timestamp_from_us(now_us()))
            return restored

        return await self._store.update(
            request.id, restore, triggered_by=perms.caller.user_id, event_type=pb.EVENT_TYPE_CREATED
        )

    async def list(self, caller: Caller, request: pb.ListTasksRequest) -> pb.ListTasksResponse:
        """One page, the count of all matches, and the event sequence both reflect (read in one
        snapshot), so `watch(after_sequence=response.sequence)` continues exactly from this page."""
        perms = await self.permissions(caller)
        if request.project_id and not caller.is_admin and not perms.role(request.project_id):
            perms = Permissions(caller, await self.memberships.refresh(caller.user_id))  # just added?
        query = self._page_query(perms, request)
        page = await self._store.page(query)
        has_more = len(page.tasks) > query.limit - 1
        tasks = page.tasks[: query.limit - 1]  # the query asks for one extra to learn whether more follow
        response = pb.ListTasksResponse(tasks=tasks, total_count=page.total, sequence=page.sequence)
        if has_more and tasks:
            response.next_page_token = self._tokens.encode(caller, query, tasks[-1])
        return response

    async def list_events(
        self, caller: Caller, request: pb.ListTaskEventsRequest
    ) -> pb.ListTaskEventsResponse:
        """A task's history, oldest first, for whoever may read the task (as GetTask decides; a
        task in the trash too, as GetTask with show_deleted: its history says how it got there)."""
        check = Checker(self.limits)
        check.task_id("task_id", request.task_id)
        if request.page_size < 0:
            check.fail("page_size", "must not be negative")
        check.raise_if_any()
        task = await self._store.get(request.task_id)
        if task is None:
            raise NotFound.task(request.task_id)

        async def read(perms: Permissions) -> None:
            if not perms.can_see(task):
                raise NotFound.task(request.task_id)

        await self._as_caller(caller, read)
        after = history_token_decode(request.task_id, request.page_token) if request.page_token else 0
        size = min(request.page_size or self.limits.page_size_default, self.limits.page_size_max)
        events = await self._store.task_events(request.task_id, after, size + 1)
        response = pb.ListTaskEventsResponse(events=[event.message() for event in events[:size]])
        if len(events) > size:
            response.next_page_token = history_token(request.task_id, events[size - 1].sequence)
        return response

    # -- streams ------------------------------------------------------------------------------

    async def watch(
        self, caller: Caller, request: pb.WatchTasksRequest
    ) -> AsyncIterator[pb.TaskEvent | bytes]:
        """Events the caller may see and the filter matches: the initial state when asked, then every
        later change, in sequence order, each once. Yields TaskEvent messages or their encoding.
        Membership changes are applied at their place in the sequence (`WatchView`).

        The initial state is read in parts, in id order (`SnapshotPart`): each part as of the
        newest sequence when it is read, preceded by the changes since the previous part to the
        tasks already sent. So the watcher's copy is always the state at the sequence it last
        received, and a watcher that stops reading holds one part, not the whole snapshot."""
        scope = self._watch_scope(request)
        part: SnapshotPart | None = None  # the next part of the initial state still to send
        if request.after_sequence > 0:
            await self._window.check_resumable(request.after_sequence)
            cursor = request.after_sequence
            roles = await self._roles_at(caller, cursor)
        elif request.include_initial:
            tasks, cursor, roles = await self._initial(caller, scope, FIRST_PART)
            for created in initial_events(tasks, cursor):
                yield created
            part = next_part(FIRST_PART, tasks)
        else:
            # The store's head, not this process's window: with replicas, another one may have
            # committed events this window has not received yet, and they precede this watch.
            cursor = (await self._store.event_bounds()).head
            roles = await self._roles_at(caller, cursor)
        view = WatchView(caller, scope, roles)
        async with contextlib.aclosing(self._window.follow(cursor, until=caller.expires_at)) as batches:
            feed = Feed(batches, cursor)
            while part is not None:
                tasks, head, _ = await self._initial(caller, scope, part)
                while (event := await feed.next(head)) is not None:
                    async for message in self._shown(view, event, sent_up_to=part.after_id):
                        yield message
                for created in initial_events(tasks, head):
                    yield created
                part = next_part(part, tasks)
            for event in feed.rest():
                async for message in self._shown(view, event):
                    yield message
            async for batch in batches:
                for event in batch:
                    if event.is_project:
                        async for message in self._shown(view, event):
                            yield message
                    elif (seen := view.task_event(event)) is not None:
                        yield seen

    async def _shown(
        self, view: WatchView, event: StoredEvent, sent_up_to: str | None = None
    ) -> AsyncIterator[pb.TaskEvent | bytes]:
        """What `view` shows of `event`. While the initial state is being sent, only what concerns
        the tasks already sent (ids up to `sent_up_to`): later parts are read after the event.
        A membership change that moves a project's tasks into or out of sight reads them in parts."""
        if not event.is_project:
            if sent_up_to is None or event.task.id <= sent_up_to:  # ids are UUIDs: any collation agrees
                seen = view.task_event(event)
                if seen is not None:
                    yield seen
            return
        crossing = view.membership(event)
        if crossing is None:
            return
        async for tasks in self._project_at(event.project_id, event.sequence):
            for message in view.crossed(event, crossing, tasks):
                if sent_up_to is not None and message.task.id > sent_up_to:
                    return
                yield message

    async def _project_at(self, project_id: str, sequence: int) -> AsyncIterator[Sequence[pb.Task]]:
        """A project's live tasks as they were at `sequence`, in parts in id order: read as they are
        now, with each one changed since put back as it was (the first event after `sequence` that
        changed a task holds it as it was before)."""
        then: dict[str, pb.Task | None] = {}  # a task changed after `sequence`: as it was at it
        read_to = sequence
        part: SnapshotPart | None = FIRST_PART
        while part is not None:
            tasks, head = await self._store.snapshot(TaskFilter(project_ids=(project_id,)), part)
            while read_to < head:  # events read past `head` only put back what the part shows as it was
                events = await self._store.events_after(read_to, _LOG_READ)
                if not events:
                    break
                for changed in events:
                    if not changed.is_project and changed.task.id not in then:
                        then[changed.task.id] = changed.previous
                read_to = events[-1].sequence
            after = next_part(part, tasks)
            shown = [task for task in tasks if task.id not in then]
            for task_id, task in then.items():
                if (
                    task is not None
                    and task.project_id == project_id
                    and not task.HasField("delete_time")
                    and part.after_id < task_id
                    and (after is None or task_id <= after.after_id)
                ):
                    shown.append(task)
            yield sorted(shown, key=lambda task: task.id)
            part = after

    async def _roles_at(self, caller: Caller, sequence: int) -> dict[str, int]:
        return {} if caller.is_admin else await self.memberships.roles_at(caller.user_id, sequence)

    async def _initial(
        self, caller: Caller, scope: WatchScope, part: SnapshotPart
    ) -> tuple[Sequence[pb.Task], int, dict[str, int]]:
        """A part of the tasks a watch starts from, the sequence they reflect and the caller's roles
        then. The part is read with the roles known before it; should they have changed by the
        sequence it reflects (a membership change in between), it is read again."""
        if caller.is_admin:
            tasks, head = await self._store.snapshot(scope.task_filter(None), part)
            return tasks, head, {}
        roles = dict(await self.memberships.roles(caller.user_id))
        for _ in range(3):
            tasks, head = await self._store.snapshot(
                scope.task_filter(Sight(caller.user_id, frozenset(roles))), part
            )
            then = await self.memberships.roles_at(caller.user_id, head)
            if then.keys() == roles.keys():
                break
            roles = then
        return tasks, head, then

    async def bulk_create(
        self, caller: Caller, requests: AsyncIterable[pb.CreateTaskRequest | DomainError]
    ) -> pb.BulkCreateResponse:
        """Create tasks in chunks, in stream order. One chunk is written while the next is read, so
        receiving and writing overlap; a failing item is reported by its index and does not stop the
        others. Items are validated a chunk at a time, not as each arrives: reading the stream in a
        tight loop lets grpc hand the event loop many messages per wake-up (docs/performance.md,
        "Known misses"). A transport hands over a DomainError in place of a message it could not
        decode.

        Chunks commit as they go, so a stream that fails part-way (an undecodable message, one item
        too many, a full disk) has stored the chunks before the failure: it ends with
        BulkInterrupted, saying which items were handled. The answer is `fitted` to what a default
        client can receive (domain/bulk.py)."""
        max_items = self.limits.bulk_items_max
        response = pb.BulkCreateResponse()
        received: list[pb.CreateTaskRequest] = []
        first = 0  # the stream index of received[0]
        handled = 0  # every item before this index is stored or in response.errors
        writing: asyncio.Task[None] | None = None

        async def write(chunk: list[tuple[int, NewTask]], end: int) -> None:
            nonlocal handled
            results = await self._store.create_many([item for _, item in chunk])
            for (index, item), result in zip(chunk, results, strict=True):
                try:
                    response.tasks.append(_created(item, result))
                except DomainError as error:
                    response.errors.add(index=index, error_message=error.message, code=error.code)
            handled = end

        perms = await self.permissions(caller)

        async def flush() -> None:
            nonlocal writing, received, first, handled
            chunk: list[tuple[int, NewTask]] = []
            for index, request in enumerate(received, first):
                try:
                    item = self._new_task(caller, request)
                    if request.project_id or request.parent_id:
                        await self._check_placement(perms, item.task)
                    chunk.append((index, item))
                except DomainError as error:
                    response.errors.add(index=index, error_message=error.message, code=error.code)
            first += len(received)
            received = []
            if writing is not None:
                await writing  # chunks are written one after another: tasks stay in stream order
                writing = None
            if chunk:
                writing = asyncio.ensure_future(write(chunk, first))
            else:
                handled = first

        try:
            async for request in requests:
                index = first + len(received)
                if isinstance(request, DomainError):
                    raise InvalidArgument.field(f"requests[{index}]", request.message)
                if index >= max_items:
                    raise InvalidArgument.field(
                        f"requests[{index}]", f"a bulk stream may carry at most {max_items} tasks"
                    )
                received.append(request)
                if len(received) >= _BULK_CHUNK:
                    await flush()
            await flush()
            await flush()
        except asyncio.CancelledError:
            if writing is not None:  # the client went away: the chunk being written still commits
                await asyncio.wait((writing,))
            raise
        except Exception as error:
            if writing is not None:
                # The stream failed while a chunk was being written: it commits regardless (as the
                # chunks before it did); wait for it so the answer says whether it was stored.
                await asyncio.wait((writing,))
                if not writing.cancelled():
                    writing.exception()
            if not isinstance(error, DomainError):
                log.exception("bulk.failed")
                error = Internal("internal error")
            raise self._interrupted(error, response, handled) from None
        response.errors.sort(key=lambda error: error.index)
        response.success_count = len(response.tasks)
        return fitted(response)

    @staticmethod
    def _interrupted(cause: DomainError, response: pb.BulkCreateResponse, handled: int) -> BulkInterrupted:
        tasks = response.tasks
        return BulkInterrupted(
            cause,
            handled=handled,
            stored=len(tasks),
            rejected=sum(1 for error in response.errors if error.index < handled),
            first_id=tasks[0].id if tasks else "",
            last_id=tasks[-1].id if tasks else "",
        )

    async def batch_create(
        self, caller: Caller, request: pb.BatchCreateTasksRequest
    ) -> pb.BulkCreateResponse:
        """The unary form of `bulk_create` for browsers and HTTP: the same chunked writes and partial
        success, each failing item reported by its index in `requests`."""
        if len(request.requests) > BATCH_ITEMS_MAX:
            raise InvalidArgument.field(
                "requests",
                f"a batch may carry at most {BATCH_ITEMS_MAX} tasks; use BulkCreateTasks for more",
            )

        async def items() -> AsyncIterator[pb.CreateTaskRequest]:
            for item in request.requests:
                yield item

        return await self.bulk_create(caller, items())

    async def process(
        self, caller: Caller, commands: AsyncIterable[pb.TaskCommand | DomainError]
    ) -> AsyncIterator[pb.TaskResult]:
        """Answer each command in order with one TaskResult; a failed command does not end the stream.
        A transport hands over a DomainError in place of a message it could not decode: that command
        is answered with the error (its command_id unknown, so empty) and the stream goes on."""
        async for command in commands:
            if isinstance(command, DomainError):
                yield pb.TaskResult(success=False, error_message=command.message, code=command.code)
                continue
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

    async def _placed(
        self, perms: Permissions, request: pb.UpdateTaskRequest, moving: Sequence[str]
    ) -> tuple[str, str]:
        """Check a change of project or parent against the task as it is; returns where it is."""
        current = await self._store.get(request.id)
        if current is None or current.HasField("delete_time") or not perms.can_see(current):
            raise NotFound.task(request.id)
        project_id = request.project_id if "project_id" in moving else current.project_id
        parent_id = request.parent_id if "parent_id" in moving else current.parent_id
        if project_id != current.project_id:
            if not perms.can_delete(current):  # an editor where it is (its creator, if personal)
                raise PermissionDenied(
                    f"moving task {current.id!r} to another project needs the editor role in both projects"
                )
            await self._placement.check_project(perms, project_id)
            await self._placement.check_movable(current)
            if parent_id and parent_id == current.parent_id:
                raise InvalidArgument.field(
                    "parent_id", "the parent stays in the old project: set a new parent_id or clear it"
                )
        if parent_id != current.parent_id or project_id != current.project_id:
            await self._placement.check_parent(perms, parent_id, project_id, task_id=current.id)
        return current.project_id, current.parent_id

    async def _check_placement(self, perms: Permissions, task: pb.Task, prefix: str = "") -> None:
        await self._placement.check_project(perms, task.project_id, f"{prefix}project_id")
        await self._placement.check_parent(perms, task.parent_id, task.project_id, field=f"{prefix}parent_id")

    def _update_change(
        self, perms: Permissions, request: pb.UpdateTaskRequest
    ) -> tuple[Callable[[pb.Task], pb.Task | None], Sequence[str]]:
        """Validate an update request; returns the change to apply to the current task and the
        fields it sets."""
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
            elif name in _PLACEMENT:
                check.text(name, getattr(request, name), max_len=self.limits.id_max)
                setattr(patch, name, getattr(request, name))
        check.raise_if_any()
        replace_metadata = (
            "metadata" in fields and request.HasField("update_mask") and bool(request.update_mask.paths)
        )

        def change(current: pb.Task) -> pb.Task | None:
            _require_visible(perms, current)
            if not perms.can_update(current):
                raise PermissionDenied(f"you may read task {current.id!r} but not change it")
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

        return change, fields

    def _page_query(self, perms: Permissions, request: pb.ListTasksRequest) -> PageQuery:
        check = Checker(self.limits)
        if request.page_size < 0:
            check.fail("page_size", "must not be negative")
        size = min(request.page_size or self.limits.page_size_default, self.limits.page_size_max)
        for i, status in enumerate(request.statuses):
            check.enum(f"statuses[{i}]", status, STATUSES, "TaskStatus")
        for i, priority in enumerate(request.priorities):
            check.enum(f"priorities[{i}]", priority, PRIORITIES, "Priority")
        self._check_filter_sizes(
            check, request.labels, statuses=request.statuses, priorities=request.priorities
        )
        check.text("assigned_to", request.assigned_to, max_len=self.limits.assigned_to_max)
        check.text("created_by", request.created_by, max_len=self.limits.assigned_to_max)
        check.text("project_id", request.project_id, max_len=self.limits.id_max)
        check.text("parent_id", request.parent_id, max_len=self.limits.id_max)
        check.raise_if_any()
        search = parse_query(request.query)
        order = (
            ()
            if search is not None and not request.order_by
            else parse_order(request.order_by, request.descending)
        )
        query = PageQuery(
            filter=TaskFilter(
                statuses=tuple(sorted(set(request.statuses))),
                priorities=tuple(sorted(set(request.priorities))),
                labels=tuple(sorted(set(request.labels))),
                assigned_to=request.assigned_to,
                created_by=request.created_by,
                project_ids=(request.project_id,) if request.project_id else (),
                parent_ids=(request.parent_id,) if request.parent_id else (),
                trashed=request.show_deleted,
                visible_to=perms.sight,
                expression=parse_filter(request.filter),
                search=search,
            ),
            order=order,
            limit=size + 1,
        )
        if request.page_token:
            query = self._tokens.decode(perms.caller, query, request.page_token)
        return query

    def _check_filter_sizes(self, check: Checker, labels: Sequence[str], **others: Sized) -> None:
        most = self.limits.filter_values_max
        for name, values in (("labels", labels), *others.items()):
            if len(values) > most:
                check.fail(name, f"at most {most} values")
        for i, label in enumerate(labels):
            check.text(f"labels[{i}]", label, max_len=self.limits.label_max, min_len=1)

    async def event_view(
        self, caller: Caller, request: pb.WatchTasksRequest, cursor: int
    ) -> Callable[[StoredEvent], pb.TaskEvent | bytes | None]:
        """What `caller` receives for each event after `cursor` under `request`'s filters, read in
        sequence order: the rule watches and webhooks share for who may see what, with project
        membership applied at its place in the sequence (raises InvalidArgument for bad filters).
        Project events themselves yield nothing."""
        view = WatchView(caller, self._watch_scope(request), await self._roles_at(caller, cursor))

        def seen(event: StoredEvent) -> pb.TaskEvent | bytes | None:
            if event.is_project:
                view.membership(event)
                return None
            return view.task_event(event)

        return seen

    def _watch_scope(self, request: pb.WatchTasksRequest) -> WatchScope:
        check = Checker(self.limits)
        if request.after_sequence < 0:
            check.fail("after_sequence", "must not be negative")
        for i, status in enumerate(request.statuses):
            check.enum(f"statuses[{i}]", status, STATUSES, "TaskStatus")
        self._check_filter_sizes(
            check, request.labels, statuses=request.statuses, project_ids=request.project_ids
        )
        if len(request.task_ids) > self.limits.page_size_max:
            check.fail("task_ids", f"at most {self.limits.page_size_max} ids")
        for i, task_id in enumerate(request.task_ids):
            check.task_id(f"task_ids[{i}]", task_id)
        for i, project_id in enumerate(request.project_ids):
            check.task_id(f"project_ids[{i}]", project_id)
        check.raise_if_any()
        return WatchScope.of(request)


def _created(item: NewTask, result: CreateResult) -> pb.Task:
    """The task a create answers with. A repeated request_id (AIP-155) gets the task its first
    request created, as it is now; once that task was deleted (gone, or in the trash) the repeat is
    NOT_FOUND saying so, never the deleted task's content, and creates nothing. The same key on a
    different request is ALREADY_EXISTS. docs/security.md ("Idempotency") explains the choice."""
    if not isinstance(result, EarlierRequest):
        return result
    if result.request_hash != item.request_hash:
        raise AlreadyExists(
            f"request_id {item.request_id!r} was already used for a different request; use a new request_id"
        )
    if result.current is None or result.current.HasField("delete_time"):
        raise NotFound(
            f"task {result.created.id!r}, which request_id {item.request_id!r} created, was deleted; "
            "use a new request_id to create another"
        )
    return result.current


def _require_visible(perms: Permissions, task: pb.Task) -> None:
    """A task the caller may not see, or one in the trash, is not found."""
    if task.HasField("delete_time") or not perms.can_see(task):
        raise NotFound.task(task.id)


def _require_version(task: pb.Task, expected: int) -> None:
    if expected and expected != task.version:
        raise VersionConflict(task.id, expected, task.version)
