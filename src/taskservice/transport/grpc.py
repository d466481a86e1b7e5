"""The gRPC adapter: method handlers that admit the caller, call the service and map errors.

Handlers are registered by hand rather than through the generated servicer base class so that
(1) a request that fails to decode becomes INVALID_ARGUMENT instead of grpcio's INTERNAL, and
(2) watch events already encoded once for all watchers go on the wire without re-encoding.

Every handler admits the caller before it reads the request: unary methods (here) and
server-streaming ones (`AdmissionGuard`) are registered with a streaming request and read their one
message themselves once the caller is admitted, in one of the caller's receive slots
(access/receiving.py). The client sees the same unary-request call either way.

A unary call runs as one coroutine that observes it (metrics, access line, span), admits the
caller, calls the service and maps its errors: it is the hot path, and nested wrappers, each
reading the call's metadata and handling errors of its own, cost measurably more per call
(docs/decisions/0004-no-aio-interceptors.md). Streaming handlers are wrapped by `AdmissionGuard` and `Telemetry` instead, once each, when
they are built.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from taskservice.access.admission import Admission
from taskservice.access.caller import Caller
from taskservice.domain.errors import DomainError, InvalidArgument
from taskservice.transport.grpc_admission import AdmissionGuard, Behaviour, read_request, text_metadata
from taskservice.transport.grpc_telemetry import Telemetry, begin_call, status_code
from taskservice.transport.methods import Method, until_shutdown
from taskservice.transport.status import abort, grpc_code

log = structlog.get_logger(__name__)

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


def _serialize(message: Message | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


class GrpcTransport:
    """Builds the gRPC method handlers of the API table (`transport/methods.py`), admitted and
    observed, over one service layer."""

    def __init__(
        self,
        methods: dict[str, Method],
        admission: Admission,
        telemetry: Telemetry,
        shutdown: asyncio.Event,
    ) -> None:
        self._methods = methods
        self._admission = admission
        self._telemetry = telemetry
        self._guard = AdmissionGuard(admission)
        self._shutdown = shutdown

    def handlers(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        """Every method's handler by service and method name, ready to register (`add_to_server`):
        nothing wraps them again."""
        services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for method in self._methods.values():
            services.setdefault(method.service, {})[method.name] = self._handler(method)
        return services

    def _handler(self, method: Method) -> grpc.RpcMethodHandler:
        if not method.is_stream:
            return self._unary(method)
        options: dict[str, Any] = {
            "request_deserializer": _deserializer(method.request_type),
            "response_serializer": _serialize,
        }
        if not method.client_streams:
            handler = self._guard.unary_stream(self._server_stream(method), **options)
        elif not method.server_streams:
            handler = self._guard.stream_unary(self._client_stream(method), **options)
        else:
            handler = self._guard.stream_stream(self._bidi_stream(method), **options)
        return self._telemetry.wrap(method.path, handler, client_streams=method.client_streams)

    def _unary(self, method: Method) -> grpc.RpcMethodHandler:
        """One coroutine per call: observe, admit, read the request, call, map errors. Admission
        comes first, so an undecodable request from an unknown caller is UNAUTHENTICATED, and the
        request of a caller that is not admitted is never read."""
        observer = self._telemetry.observer(method.path, "unary")
        admit, receive = self._admission.admit, self._admission.receiving.receive
        received, sent, finish = observer.metrics.received, observer.metrics.sent, observer.finish
        call = method.call

        async def handle(_: object, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
            metadata = context.invocation_metadata() or ()
            record = begin_call(observer, context, metadata)
            received()
            try:
                caller = admit(text_metadata(metadata), context.peer)
                request = await receive(caller, lambda: read_request(context))
                if isinstance(request, Malformed):
                    raise request.error()
                response: Message = await call(caller, request)
            except DomainError as error:
                finish(record, grpc_code(error.code))
                await abort(context, error)
            except asyncio.CancelledError as error:
                finish(record, status_code(context, error))
                raise
            except Exception:
                log.exception("rpc.internal_error")
                finish(record, grpc.StatusCode.INTERNAL)
                await abort(context, None)
            else:
                sent()
                finish(record, grpc.StatusCode.OK)
                return response
            raise AssertionError("unreachable: abort raises")

        return grpc.stream_unary_rpc_method_handler(
            handle, request_deserializer=_deserializer(method.request_type), response_serializer=_serialize
        )

    def _server_stream(self, method: Method) -> Behaviour:
        async def behaviour(
            caller: Caller, request: Message | Malformed, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Message | bytes]:
            try:
                if isinstance(request, Malformed):
                    raise request.error()
                async for reply in method.call(caller, request):
                    yield reply
            except DomainError as error:
                await abort(context, error)
            except Exception:
                log.exception("rpc.internal_error")
                await abort(context, None)

        return behaviour

    def _client_stream(self, method: Method) -> Behaviour:
        async def behaviour(
            caller: Caller,
            requests: AsyncIterator[Message | Malformed],
            context: grpc.aio.ServicerContext[Any, Any],
        ) -> Message:
            try:
                response: Message = await method.call(caller, _errors_in_place(requests))
                return response
            except DomainError as error:
                await abort(context, error)
            except Exception:
                log.exception("rpc.internal_error")
                await abort(context, None)
            raise AssertionError("unreachable: abort raises")

        return behaviour

    def _bidi_stream(self, method: Method) -> Behaviour:
        shutdown = self._shutdown

        async def behaviour(
            caller: Caller,
            requests: AsyncIterator[Message | Malformed],
            context: grpc.aio.ServicerContext[Any, Any],
        ) -> AsyncIterator[Message | bytes]:
            try:
                stream = until_shutdown(shutdown, _errors_in_place(requests))
                async for reply in method.call(caller, stream):
                    yield reply
            except DomainError as error:
                await abort(context, error)
            except Exception:
                log.exception("rpc.internal_error")
                await abort(context, None)

        return behaviour


async def _errors_in_place(messages: AsyncIterable[M | Malformed]) -> AsyncIterator[M | DomainError]:
    """Messages as they come, an undecodable one replaced by its error, for the use case to answer
    (a command stream answers that command and goes on; a bulk stream stops, saying where)."""
    async for message in messages:
        yield message.error() if isinstance(message, Malformed) else message


def add_to_server(server: Any, services: dict[str, dict[str, grpc.RpcMethodHandler]]) -> None:
    """Register every service's handlers (`GrpcTransport.handlers`) on `server`."""
    for name, handlers in services.items():
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)
