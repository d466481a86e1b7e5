"""`TaskClient`: the blocking client (what `taskctl` uses)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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

OnRetry = Callable[[TaskServiceError, float], None]


Reply = TypeVar("Reply", bound=Message)


class TaskClient:
    """A connection to a TaskService server.

    Unary calls carry a deadline of `timeout` seconds (None: no deadline) that also bounds their
    retries. Idempotent calls are retried on UNAVAILABLE (and on a CANCELLED the client did not cause,
    see `Retry`) with exponential backoff:
    get, list, create (it always carries a request_id, so a replay returns the first task) and an
    update without `expected_version` (it sets absolute values, so applying it twice equals once).
    Every failure is raised as `TaskServiceError`. `tls`, `ca_file` (the CAs to trust) and
    `cert_file`/`key_file` (a client certificate, for servers that require mTLS) secure the channel.
    """

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
            grpc.secure_channel(server, creds, options=CHANNEL_OPTIONS)
            if creds
            else grpc.insecure_channel(server, options=CHANNEL_OPTIONS)
        )
        self._stub = rpc.TaskServiceStub(self._channel)
        self._webhooks = rpc.WebhookServiceStub(self._channel)
        self._metadata = call_metadata(token)
        self.timeout = timeout
        self.retry = retry or Retry()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TaskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, method: str, request: Message, reply: type[Reply], *, idempotent: bool, stub: Any = None
    ) -> Reply:
        """Call a unary method by name; `reply` is its response type (the stub is looked up by name;
        `stub`: another service's, WebhookService's, instead of TaskService's)."""
        rpc = getattr(stub or self._stub, method)
        return cast(
            Reply,
            self._retrying(
                lambda remaining: rpc(request, timeout=remaining, metadata=self._metadata),
                idempotent=idempotent,
                budget=self.timeout,
            ),
        )

    def _retrying(
        self, invoke: Callable[[float | None], Any], *, idempotent: bool, budget: float | None
    ) -> Any:
        """Run `invoke(seconds_left)`; retry it per `self.retry` when idempotent, within `budget` seconds."""
        deadline = None if budget is None else time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            try:
                return invoke(remaining)
            except grpc.RpcError as rpc_error:
                error = TaskServiceError.from_rpc_error(rpc_error)
            delay = self.retry.delay(error, attempt) if idempotent else None
            late = deadline is not None and delay is not None and time.monotonic() + delay >= deadline
            if delay is None or attempt >= self.retry.attempts or late:
                raise error
            time.sleep(delay)

    # -- webhooks (WebhookService) -------------------------------------------------------------

    def create_webhook(
        self,
        url: str,
        *,
        statuses: Iterable[StatusLike] = (),
        labels: Iterable[str] = (),
        project_ids: Iterable[str] = (),
        description: str = "",
    ) -> pb.Webhook:
        """Create a webhook; its `secret` is in this answer only."""
        request = pb.CreateWebhookRequest(
            url=url,
            statuses=[build.status_value(s) for s in statuses],  # type: ignore[misc]
            labels=list(labels),
            project_ids=list(project_ids),
            description=description,
        )
        return self._call("CreateWebhook", request, pb.Webhook, idempotent=False, stub=self._webhooks)

    def iter_webhooks(self, page_size: int = 100) -> Iterator[pb.Webhook]:
        """Every webhook the caller owns (an admin: everyone's), page by page."""
        request = pb.ListWebhooksRequest(page_size=page_size)
        while True:
            page = self._call(
                "ListWebhooks", request, pb.ListWebhooksResponse, idempotent=True, stub=self._webhooks
            )
            yield from page.webhooks
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def webhook_deliveries(self, webhook_id: str, limit: int = 50) -> list[pb.WebhookDelivery]:
        """The webhook's most recent delivery attempts, newest first."""
        request = pb.ListWebhookDeliveriesRequest(webhook_id=webhook_id, page_size=limit)
        page = self._call(
            "ListWebhookDeliveries",
            request,
            pb.ListWebhookDeliveriesResponse,
            idempotent=True,
            stub=self._webhooks,
        )
        return list(page.deliveries)

    def delete_webhook(self, webhook_id: str) -> None:
        self._call(
            "DeleteWebhook",
            pb.DeleteWebhookRequest(id=webhook_id),
            empty_pb2.Empty,
            idempotent=False,
            stub=self._webhooks,
        )

    # -- unary --------------------------------------------------------------------------------

    def create(
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
        """Create a task. Without `request_id` one is generated, which makes retries safe."""
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
        return self._call("CreateTask", request, pb.Task, idempotent=True)

    def get(self, task_id: str, *, show_deleted: bool = False) -> pb.Task:
        """A task; one in the trash only with `show_deleted`."""
        request = pb.GetTaskRequest(id=task_id, show_deleted=show_deleted)
        return self._call("GetTask", request, pb.Task, idempotent=True)

    def undelete(self, task_id: str) -> pb.Task:
        """Take a task out of the trash (NOT_FOUND once purged)."""
        return self._call("UndeleteTask", pb.UndeleteTaskRequest(id=task_id), pb.Task, idempotent=True)

    # -- projects -----------------------------------------------------------------------------

    def create_project(
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
        return self._call("CreateProject", request, pb.Project, idempotent=True)

    def get_project(self, project_id: str) -> pb.Project:
        return self._call("GetProject", pb.GetProjectRequest(id=project_id), pb.Project, idempotent=True)

    def update_project(
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
        return self._call("UpdateProject", request, pb.Project, idempotent=not expected_version)

    def delete_project(self, project_id: str, *, force: bool = False, expected_version: int = 0) -> None:
        """Delete a project; one that holds tasks only with `force` (its tasks are deleted with it, for good)."""
        request = pb.DeleteProjectRequest(id=project_id, force=force, expected_version=expected_version)
        self._call("DeleteProject", request, empty_pb2.Empty, idempotent=False)

    def list_projects(self, *, page_size: int = 0, page_token: str = "") -> pb.ListProjectsResponse:
        """One page of the projects you belong to (every project, for an admin)."""
        request = pb.ListProjectsRequest(page_size=page_size, page_token=page_token)
        return self._call("ListProjects", request, pb.ListProjectsResponse, idempotent=True)

    def set_member(
        self, project_id: str, user: str, role: RoleLike | None, *, expected_version: int = 0
    ) -> pb.Project:
        """Add `user` to the project with `role`, change their role, or (role None) remove them."""
        request = pb.SetProjectMemberRequest(
            project_id=project_id,
            user=user,
            role=build.role_value(role) if role is not None else pb.PROJECT_ROLE_UNSPECIFIED,  # type: ignore[arg-type]
            expected_version=expected_version,
        )
        return self._call("SetProjectMember", request, pb.Project, idempotent=True)

    def update(
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
        """Change only the fields given; `labels=[]` and `due=""` clear. ABORTED if the task is
        not at `expected_version` (when non-zero)."""
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
        return self._call("UpdateTask", request, pb.Task, idempotent=not expected_version)

    def delete(self, task_id: str, *, expected_version: int = 0) -> None:
        """Delete a task. Not retried: a replay after a lost answer would report NOT_FOUND."""
        self._call(
            "DeleteTask",
            pb.DeleteTaskRequest(id=task_id, expected_version=expected_version),
            empty_pb2.Empty,
            idempotent=False,
        )

    def history(self, task_id: str, *, page_size: int = 0, page_token: str = "") -> pb.ListTaskEventsResponse:
        """One page of a task's history, oldest first (UPDATED events carry changed_paths)."""
        request = pb.ListTaskEventsRequest(task_id=task_id, page_size=page_size, page_token=page_token)
        return self._call("ListTaskEvents", request, pb.ListTaskEventsResponse, idempotent=True)

    def list(self, request: pb.ListTasksRequest | None = None, **filters: Any) -> pb.ListTasksResponse:
        """One page. Pass a ListTasksRequest, or the keyword arguments of `requests.list_request`."""
        request = request or build.list_request(**filters)
        return self._call("ListTasks", request, pb.ListTasksResponse, idempotent=True)

    def iter_tasks(
        self, *, limit: int | None = None, page_size: int = 500, **filters: Any
    ) -> Iterator[pb.Task]:
        """Every matching task (or the first `limit`), following page tokens."""
        request = build.list_request(page_size=min(page_size, limit or page_size), **filters)
        sent = 0
        while True:
            page = self.list(request)
            for task in page.tasks:
                if limit is not None and sent >= limit:
                    return
                sent += 1
                yield task
            if not page.next_page_token or (limit is not None and sent >= limit):
                return
            request.page_token = page.next_page_token

    # -- streams (no deadline: they last as long as their input or the caller wants) -----------

    def watch(
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
    ) -> Iterator[pb.TaskEvent]:
        """Matching events, forever. When the stream breaks with UNAVAILABLE (a restart, a network
        failure) it reconnects with backoff and resumes after the last event it yielded, calling
        `on_retry(error, delay)` first. Other errors (e.g. OUT_OF_RANGE) are raised."""
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
                for event in call:
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
            time.sleep(delay)

    def bulk_create(self, requests: Iterable[pb.CreateTaskRequest]) -> pb.BulkCreateResponse:
        """Stream the requests in one BulkCreateTasks call; bad items come back in `errors`.

        Retried (as unary calls are) only when `requests` is a list (it can be sent again) whose items all
        carry a request_id: a replay then returns the tasks already created instead of repeating them."""
        replayable = is_replayable(requests)
        response: pb.BulkCreateResponse = self._retrying(
            lambda _: self._stub.BulkCreateTasks(iter(requests), metadata=self._metadata),
            idempotent=replayable,
            budget=None,
        )
        return response

    def batch_create(self, requests: Sequence[pb.CreateTaskRequest]) -> pb.BulkCreateResponse:
        """BatchCreateTasks: up to 1,000 tasks in one unary call, with BulkCreateTasks' partial success.
        Retried (as unary calls are) when every item carries a request_id."""
        request = pb.BatchCreateTasksRequest(requests=requests)
        return self._call(
            "BatchCreateTasks", request, pb.BulkCreateResponse, idempotent=all(r.request_id for r in requests)
        )

    def process(self, commands: Iterable[pb.TaskCommand]) -> Iterator[pb.TaskResult]:
        """ProcessTaskStream: one TaskResult per command, in order, as they are answered."""
        call = self._stub.ProcessTaskStream(iter(commands), metadata=self._metadata)
        try:
            yield from call
        except grpc.RpcError as rpc_error:
            raise TaskServiceError.from_rpc_error(rpc_error) from None
        finally:
            call.cancel()
