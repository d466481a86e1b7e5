"""The gRPC adapter: method handlers that authenticate, call the service and map errors.

Handlers are registered by hand rather than through the generated servicer base class so that
(1) a request that fails to decode becomes INVALID_ARGUMENT instead of grpcio's INTERNAL, and
(2) watch events already encoded once for all watchers go on the wire without re-encoding.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError, Message
from grpc_status import rpc_status

from taskservice.api import task_service_pb2 as pb
from taskservice.auth import CURRENT_CALLER, Authenticator
from taskservice.errors import DomainError, InvalidArgument, Unavailable
from taskservice.model import Caller
from taskservice.service import TaskService
from taskservice.transport.status import internal_status, to_status

log = structlog.get_logger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TaskService"].full_name
M = TypeVar("M", bound=Message)


class Malformed:
    """Stands in for a request message that could not be decoded."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def error(self) -> InvalidArgument:
        return InvalidArgument.field("request", f"is not a valid {self.type_name} message")


def _deserializer(message_type: type[M]) -> Callable[[bytes], M | Malformed]:
    name = message_type.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> M | Malformed:
        try:
            return message_type.FromString(data)
        except (DecodeError, RuntimeError, ValueError):
            return Malformed(name)

    return deserialize


def metadata_of(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    """The call's text metadata (binary `-bin` entries left out)."""
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def _serialize(message: Message | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: DomainError | None) -> None:
    """End the call with the error's status (None: INTERNAL, with nothing of the exception)."""
    status = rpc_status.to_status(to_status(error) if error is not None else internal_status())
    # Keep the trailing metadata already set (the request id) next to the status details.
    trailing = tuple(context.trailing_metadata() or ()) + tuple(status.trailing_metadata)
    await context.abort(status.code, status.details, trailing)


class GrpcTransport:
    """Builds the TaskService method handlers over one service layer."""

    def __init__(self, service: TaskService, authenticator: Authenticator, shutdown: asyncio.Event) -> None:
        self._service = service
        self._auth = authenticator
        self._shutdown = shutdown

    def _caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The caller the admission interceptor authenticated; without one, authenticate here."""
        caller = CURRENT_CALLER.get()
        return caller if caller is not None else self._auth.authenticate(metadata_of(context))

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        s = self._service

        async def delete(caller: Caller, request: pb.DeleteTaskRequest) -> empty_pb2.Empty:
            await s.delete(caller, request)
            return empty_pb2.Empty()

        return {
            "CreateTask": self._unary(s.create, pb.CreateTaskRequest),
            "GetTask": self._unary(s.get, pb.GetTaskRequest),
            "UpdateTask": self._unary(s.update, pb.UpdateTaskRequest),
            "DeleteTask": self._unary(delete, pb.DeleteTaskRequest),
            "ListTasks": self._unary(s.list, pb.ListTasksRequest),
            "WatchTasks": grpc.unary_stream_rpc_method_handler(
                self._watch,
                request_deserializer=_deserializer(pb.WatchTasksRequest),
                response_serializer=_serialize,
            ),
            "BulkCreateTasks": grpc.stream_unary_rpc_method_handler(
                self._bulk_create,
                request_deserializer=_deserializer(pb.CreateTaskRequest),
                response_serializer=_serialize,
            ),
            "ProcessTaskStream": grpc.stream_stream_rpc_method_handler(
                self._process,
                request_deserializer=_deserializer(pb.TaskCommand),
                response_serializer=_serialize,
            ),
        }

    def _unary(
        self, method: Callable[[Caller, Any], Awaitable[Message]], request_type: type[Message]
    ) -> grpc.RpcMethodHandler:
        async def handle(
            request: Message | Malformed, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Message:
            try:
                if isinstance(request, Malformed):
                    raise request.error()
                return await method(self._caller(context), request)
            except DomainError as error:
                await abort(context, error)
            except Exception:
                log.exception("rpc.internal_error")
                await abort(context, None)
            raise AssertionError("unreachable: abort raises")

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=_deserializer(request_type), response_serializer=_serialize
        )

    async def _watch(
        self, request: pb.WatchTasksRequest | Malformed, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Message | bytes]:
        try:
            if isinstance(request, Malformed):
                raise request.error()
            async for event in self._service.watch(self._caller(context), request):
                yield event
        except DomainError as error:
            await abort(context, error)
        except Exception:
            log.exception("rpc.internal_error")
            await abort(context, None)

    async def _bulk_create(
        self,
        requests: AsyncIterator[pb.CreateTaskRequest | Malformed],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.BulkCreateResponse:
        try:
            return await self._service.bulk_create(self._caller(context), _well_formed(requests))
        except DomainError as error:
            await abort(context, error)
        except Exception:
            log.exception("rpc.internal_error")
            await abort(context, None)
        raise AssertionError("unreachable: abort raises")

    async def _process(
        self, commands: AsyncIterator[pb.TaskCommand | Malformed], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.TaskResult]:
        try:
            stream = _until(self._shutdown, _well_formed(commands))
            async for result in self._service.process(self._caller(context), stream):
                yield result
        except DomainError as error:
            await abort(context, error)
        except Exception:
            log.exception("rpc.internal_error")
            await abort(context, None)


async def _well_formed(messages: AsyncIterable[M | Malformed]) -> AsyncIterator[M]:
    async for message in messages:
        if isinstance(message, Malformed):
            raise message.error()
        yield message


async def _until(shutdown: asyncio.Event, messages: AsyncIterator[M]) -> AsyncIterator[M]:
    """Pass messages through until the server starts shutting down, then end with UNAVAILABLE."""
    stop = asyncio.ensure_future(shutdown.wait())
    try:
        while True:
            next_message = asyncio.ensure_future(anext(messages))
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


def add_to_server(server: Any, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
    """Register TaskService's handlers (already wrapped by admission and telemetry) on `server`."""
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
