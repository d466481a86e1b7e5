"""`AsyncTaskClient`: the asyncio client, with the same methods and policies as `TaskClient`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.client import requests as build
from taskservice.client.errors import TaskServiceError
from taskservice.client.policy import (
    CHANNEL_OPTIONS,
    DEFAULT_SERVER,
    Retry,
    WatchCursor,
    call_metadata,
    credentials,
    is_replayable,
)
from taskservice.client.requests import DueLike, PriorityLike, RoleLike, StatusLike
from taskservice.client.sync import OnRetry

Reply = TypeVar("Reply", bound=Message)


class AsyncTaskClient:
    """A grpc.aio connection to a TaskService server; see `TaskClient` for deadlines and retries."""

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        token: str | None = None,
        tls: bool = False,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        timeout: float | None = 10.0,
        retry: Retry | None = None,
    ) -> None:
        creds = credentials(tls, ca_file, cert_file, key_file)
        self._channel = (
            grpc.aio.secure_channel(server, creds, options=CHANNEL_OPTIONS)
            if creds
            else grpc.aio.insecure_channel(server, options=CHANNEL_OPTIONS)
        )
        self._stub = rpc.TaskServiceStub(self._channel)
        self._metadata = call_metadata(token)
        self.timeout = timeout
        self.retry = retry or Retry()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncTaskClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, request: Message, reply: type[Reply], *, idempotent: bool) -> Reply:
        """Call a unary method by name; `reply` is its response type (the stub is looked up by name)."""
        rpc = getattr(self._stub, method)
        return cast(
            Reply,
            await self._retrying(
                lambda remaining: rpc(request, timeout=remaining, metadata=self._metadata),
                idempotent=idempotent,
                budget=self.timeout,
            ),
        )

    async def _retrying(
        self, invoke: Callable[[float | None], Awaitable[Any]], *, idempotent: bool, budget: float | None
    ) -> Any:
        deadline = None if budget is None else time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            try:
                return await invoke(remaining)
            except grpc.RpcError as rpc_error:
                error = TaskServiceError.from_rpc_error(rpc_error)
            delay = self.retry.delay(error, attempt) if idempotent else None
            late = deadline is not None and delay is not None and time.monotonic() + delay >= deadline
            if delay is None or attempt >= self.retry.attempts or late:
                raise error
            await asyncio.sleep(delay)

    async def create(
        self,
        title: str,
        *,
        description: str = "",
        priority: PriorityLike | None = None,
        labels: Iterable[str] = (),
        assigned_to: str = "",
        due: DueLike = None,
        metadata: Mapping[str, str] | None = None,
        request_id: str | None = None,
        project_id: str = "",
        parent_id: str = "",
    ) -> pb.Task:
        request = build.create_request(
            title,
            description=description,
            priority=priority,
            labels=labels,
            assigned_to=assigned_to,
            due=due,
            metadata=metadata,
            request_id=request_id or str(uuid.uuid4()),
            project_id=project_id,
            parent_id=parent_id,
        )
        return await self._call("CreateTask", request, pb.Task, idempotent=True)

    async def get(self, task_id: str, *, show_deleted: bool = False) -> pb.Task:
        """A task; one in the trash only with `show_deleted`."""
        request = pb.GetTaskRequest(id=task_id, show_deleted=show_deleted)
        return await self._call("GetTask", request, pb.Task, idempotent=True)

    async def undelete(self, task_id: str) -> pb.Task:
        """Take a task out of the trash (NOT_FOUND once purged)."""
        return await self._call("UndeleteTask", pb.UndeleteTaskRequest(id=task_id), pb.Task, idempotent=True)

    # -- projects -----------------------------------------------------------------------------

    async def create_project(
        self,
        title: str,
        *,
        description: str = "",
        members: Mapping[str, RoleLike] | None = None,
        request_id: str | None = None,
    ) -> pb.Project:
        """Create a project; you are its owner. `members` maps users to roles ("viewer", "editor",
        "owner"). Without `request_id` one is generated, which makes retries safe."""
        request = pb.CreateProjectRequest(
            title=title,
            description=description,
            members=build.members(members or {}),
            request_id=request_id or str(uuid.uuid4()),
        )
        return await self._call("CreateProject", request, pb.Project, idempotent=True)

    async def get_project(self, project_id: str) -> pb.Project:
        return await self._call(
            "GetProject", pb.GetProjectRequest(id=project_id), pb.Project, idempotent=True
        )

    async def update_project(
        self,
        project_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        expected_version: int = 0,
    ) -> pb.Project:
        request = pb.UpdateProjectRequest(
            id=project_id, title=title, description=description, expected_version=expected_version
        )
        return await self._call("UpdateProject", request, pb.Project, idempotent=not expected_version)

    async def delete_project(
        self, project_id: str, *, force: bool = False, expected_version: int = 0
    ) -> None:
        """Delete a project; one that holds tasks only with `force` (its tasks are deleted with it, for good)."""
        request = pb.DeleteProjectRequest(id=project_id, force=force, expected_version=expected_version)
        await self._call("DeleteProject", request, empty_pb2.Empty, idempotent=False)

    async def list_projects(self, *, page_size: int = 0, page_token: str = "") -> pb.ListProjectsResponse:
        """One page of the projects you belong to (every project, for an admin)."""
        request = pb.ListProjectsRequest(page_size=page_size, page_token=page_token)
        return await self._call("ListProjects", request, pb.ListProjectsResponse, idempotent=True)

    async def set_member(
        self, project_id: str, user: str, role: RoleLike | None, *, expected_version: int = 0
    ) -> pb.Project:
        """Add `user` to the project with `role`, change their role, or (role None) remove them."""
        request = pb.SetProjectMemberRequest(
            project_id=project_id,
            user=user,
            role=build.role_value(role) if role is not None else pb.PROJECT_ROLE_UNSPECIFIED,  # type: ignore[arg-type]
            expected_version=expected_version,
        )
        return await self._call("SetProjectMember", request, pb.Project, idempotent=True)

    async def update(
        self,
        task_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        status: StatusLike | None = None,
        priority: PriorityLike | None = None,
        labels: Iterable[str] | None = None,
        assigned_to: str | None = None,
        due: DueLike = None,
        metadata: Mapping[str, str] | None = None,
        expected_version: int = 0,
        project_id: str | None = None,
        parent_id: str | None = None,
    ) -> pb.Task:
        request = build.update_request(
            task_id,
            title=title,
            description=description,
            status=status,
            priority=priority,
            labels=labels,
            assigned_to=assigned_to,
            due=due,
            metadata=metadata,
            expected_version=expected_version,
            project_id=project_id,
            parent_id=parent_id,
        )
        return await self._call("UpdateTask", request, pb.Task, idempotent=not expected_version)

    async def delete(self, task_id: str, *, expected_version: int = 0) -> None:
        request = pb.DeleteTaskRequest(id=task_id, expected_version=expected_version)
        await self._call("DeleteTask", request, empty_pb2.Empty, idempotent=False)

    async def history(
        self, task_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> pb.ListTaskEventsResponse:
        """One page of a task's history, oldest first (UPDATED events carry changed_paths)."""
        request = pb.ListTaskEventsRequest(task_id=task_id, page_size=page_size, page_token=page_token)
        return await self._call("ListTaskEvents", request, pb.ListTaskEventsResponse, idempotent=True)

    async def list(self, request: pb.ListTasksRequest | None = None, **filters: Any) -> pb.ListTasksResponse:
        request = request or build.list_request(**filters)
        return await self._call("ListTasks", request, pb.ListTasksResponse, idempotent=True)

    async def iter_tasks(
        self, *, limit: int | None = None, page_size: int = 500, **filters: Any
    ) -> AsyncIterator[pb.Task]:
        request = build.list_request(page_size=min(page_size, limit or page_size), **filters)
        sent = 0
        while True:
            page = await self.list(request)
            for task in page.tasks:
                if limit is not None and sent >= limit:
                    return
                sent += 1
                yield task
            if not page.next_page_token or (limit is not None and sent >= limit):
                return
            request.page_token = page.next_page_token

    async def watch(
        self,
        *,
        task_ids: Iterable[str] = (),
        statuses: Iterable[StatusLike] = (),
        labels: Iterable[str] = (),
        include_initial: bool = False,
        after_sequence: int = 0,
        project_ids: Iterable[str] = (),
        filter: str = "",
        on_retry: OnRetry | None = None,
    ) -> AsyncGenerator[pb.TaskEvent, None]:
        """Matching events, forever, resuming by itself after UNAVAILABLE (see `TaskClient.watch`)."""
        cursor = WatchCursor(
            build.watch_request(
                task_ids=task_ids,
                statuses=statuses,
                labels=labels,
                include_initial=include_initial,
                after_sequence=after_sequence,
                project_ids=project_ids,
                filter=filter,
            )
        )
        failures = 0
        while True:
            call = self._stub.WatchTasks(cursor.next_request(), metadata=self._metadata)
            error = TaskServiceError(grpc.StatusCode.UNAVAILABLE, "the server ended the watch")
            try:
                async for event in call:
                    if cursor.accept(event):
                        failures = 0
                        yield event
            except grpc.RpcError as rpc_error:
                error = TaskServiceError.from_rpc_error(rpc_error)
            finally:
                call.cancel()
            failures += 1
            delay = self.retry.delay(error, failures)
            if delay is None:
                raise error
            if on_retry is not None:
                on_retry(error, delay)
            await asyncio.sleep(delay)

    async def bulk_create(
        self, requests: Iterable[pb.CreateTaskRequest] | AsyncIterable[pb.CreateTaskRequest]
    ) -> pb.BulkCreateResponse:
        """See `TaskClient.bulk_create`: retried only for a list of requests that all carry a request_id."""
        response: pb.BulkCreateResponse = await self._retrying(
            lambda _: self._stub.BulkCreateTasks(requests, metadata=self._metadata),
            idempotent=is_replayable(requests),
            budget=None,
        )
        return response

    async def process(
        self, commands: Iterable[pb.TaskCommand] | AsyncIterable[pb.TaskCommand]
    ) -> AsyncIterator[pb.TaskResult]:
        call = self._stub.ProcessTaskStream(commands, metadata=self._metadata)
        try:
            async for result in call:
                yield result
        except grpc.RpcError as rpc_error:
            raise TaskServiceError.from_rpc_error(rpc_error) from None
        finally:
            call.cancel()
