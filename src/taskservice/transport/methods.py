"""The API as one table: every method the transports serve, with its shape and its use case.

The shapes and message types come from the `.proto`'s descriptors; the only thing written here by
hand is which service-layer call implements each method. The gRPC, gRPC-Web (and any later HTTP)
adapters read this table, so a method added here is served on every port, with one shutdown policy:
a stream whose client keeps sending (ProcessTaskStream) or that follows live events (WatchTasks)
ends with UNAVAILABLE when the server starts shutting down, so its client reconnects elsewhere;
every other call in flight finishes within the grace period. A method of the `.proto` with no entry
here answers UNIMPLEMENTED on every port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import empty_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import Unavailable
from taskservice.domain.service import TaskService
from taskservice.domain.webhooks import WebhookService

T = TypeVar("T")

# What a method's call returns: a message (unary, client stream) or an async iterator of replies
# (server and bidirectional streams); watch events may come already encoded, as bytes.
Reply = Message | bytes
Call = Callable[[Caller, Any], Any]

TASK_SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["TaskService"]
WEBHOOK_SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["WebhookService"]
# Every service of the `.proto`: HTTP routes and RPC paths exist for all of them, and a method with no
# entry in the table answers UNIMPLEMENTED until one is added.
API_SERVICES: tuple[ServiceDescriptor, ...] = tuple(pb.DESCRIPTOR.services_by_name.values())


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC: where it lives, its message types and shape, and the use case that answers it.

    `call(caller, request)` takes the request message, or for client streams an async iterable of
    them; it returns an awaitable message, or for server streams an async iterator of replies."""

    descriptor: MethodDescriptor
    call: Call

    @property
    def name(self) -> str:
        return str(self.descriptor.name)

    @property
    def service(self) -> str:
        return str(self.descriptor.containing_service.full_name)

    @property
    def path(self) -> str:
        """`/package.Service/Method`, the HTTP/2 path every gRPC-family protocol uses."""
        return f"/{self.service}/{self.name}"

    @property
    def request_type(self) -> type[Message]:
        return GetMessageClass(self.descriptor.input_type)

    @property
    def response_type(self) -> type[Message]:
        return GetMessageClass(self.descriptor.output_type)

    @property
    def client_streams(self) -> bool:
        return bool(self.descriptor.client_streaming)

    @property
    def server_streams(self) -> bool:
        return bool(self.descriptor.server_streaming)

    @property
    def rpc_type(self) -> str:
        """The method's shape as the metrics name it (the same series on every port)."""
        if not self.client_streams:
            return "server_stream" if self.server_streams else "unary"
        return "bidi_stream" if self.server_streams else "client_stream"

    @property
    def is_stream(self) -> bool:
        """Holds one of the caller's stream slots while open."""
        return self.client_streams or self.server_streams

    @property
    def ends_at_shutdown(self) -> bool:
        """Ends with UNAVAILABLE when the server starts shutting down (see the module docstring)."""
        return self.server_streams


def task_service_methods(service: TaskService) -> dict[str, Method]:
    """TaskService's methods by path, for every transport."""

    async def delete(caller: Caller, request: pb.DeleteTaskRequest) -> empty_pb2.Empty:
        await service.delete(caller, request)
        return empty_pb2.Empty()

    async def delete_project(caller: Caller, request: pb.DeleteProjectRequest) -> empty_pb2.Empty:
        await service.projects.delete(caller, request)
        return empty_pb2.Empty()

    projects = service.projects
    calls: Mapping[str, Call] = {
        "CreateTask": service.create,
        "GetTask": service.get,
        "UpdateTask": service.update,
        "DeleteTask": delete,
        "ListTasks": service.list,
        "ListTaskEvents": service.list_events,
        "WatchTasks": service.watch,
        "BulkCreateTasks": service.bulk_create,
        "BatchCreateTasks": service.batch_create,
        "ProcessTaskStream": service.process,
        "UndeleteTask": service.undelete,
        "CreateProject": projects.create,
        "GetProject": projects.get,
        "UpdateProject": projects.update,
        "DeleteProject": delete_project,
        "ListProjects": projects.list,
        "SetProjectMember": projects.set_member,
    }
    return table(TASK_SERVICE, calls)


def webhook_service_methods(webhooks: WebhookService) -> dict[str, Method]:
    """WebhookService's methods by path, for every transport."""

    async def delete(caller: Caller, request: pb.DeleteWebhookRequest) -> empty_pb2.Empty:
        await webhooks.delete(caller, request)
        return empty_pb2.Empty()

    calls: Mapping[str, Call] = {
        "CreateWebhook": webhooks.create,
        "GetWebhook": webhooks.get,
        "ListWebhooks": webhooks.list,
        "UpdateWebhook": webhooks.update,
        "DeleteWebhook": delete,
        "ListWebhookDeliveries": webhooks.deliveries,
    }
    return table(WEBHOOK_SERVICE, calls)


def table(service: ServiceDescriptor, calls: Mapping[str, Call]) -> dict[str, Method]:
    """The methods of `service` that `calls` implements, by path; a name not in the `.proto` is a bug."""
    unknown = set(calls) - set(service.methods_by_name)
    if unknown:
        raise ValueError(f"{service.full_name} has no method {', '.join(sorted(unknown))}")
    methods = (Method(service.methods_by_name[name], call) for name, call in calls.items())
    return {method.path: method for method in methods}


async def until_shutdown(shutdown: asyncio.Event, messages: AsyncIterable[T]) -> AsyncIterator[T]:
    """Pass a client's messages through until the server starts shutting down, then end the call
    with UNAVAILABLE (the shutdown policy for streams that would otherwise never end)."""
    iterator = aiter(messages)
    stop = asyncio.ensure_future(shutdown.wait())
    try:
        while True:
            next_message = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({next_message, stop}, return_when=asyncio.FIRST_COMPLETED)
            if next_message not in done:
                next_message.cancel()
                raise Unavailable("the server is shutting down; reconnect and retry")
            try:
                yield next_message.result()
            except StopAsyncIteration:
                return
    finally:
        stop.cancel()
