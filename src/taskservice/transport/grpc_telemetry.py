"""Telemetry for every gRPC method: metrics, access log, request ids and trace spans.

It wraps the behaviour of each method handler (all four RPC shapes) once, when the handler is
registered (`Telemetry.server` hands out a server whose registrations are wrapped), so a call pays
only for the wrapper. It is not a grpc.aio ServerInterceptor on purpose: grpc.aio runs every
interceptor's `intercept_service` on every call, and wrapping behaviour there means new handler
objects per call (docs/decisions/0004-no-aio-interceptors.md). The request id (the caller's
`x-request-id`, or a new one) goes back in the trailing metadata of every call — free, it rides with
the status — and, for streaming calls, also in the initial metadata so a client knows it before the
stream ends. (Initial metadata on a unary call costs an extra batch on the wire, so unary calls do
without it.)
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeAlias

import grpc

from taskservice.telemetry.observability import REQUEST_ID_HEADER, CallObserver, CallRecord

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
_FIELDS = {
    (False, False): ("unary_unary", "unary"),
    (True, False): ("stream_unary", "client_stream"),
    (False, True): ("unary_stream", "server_stream"),
    (True, True): ("stream_stream", "bidi_stream"),
}


class Telemetry:
    """Wraps method handlers with their method's CallObserver, once per method."""

    def __init__(self, *, tracer: Any | None = None) -> None:
        self._tracer = tracer
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def observed(self, method: str, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
        """`handler` of `method` ("/pkg.Service/Name") wrapped; the same wrapper for the same handler."""
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED; no series for made-up names
            return None
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, self.wrap(method, handler))
        return cached[1]

    def server(self, server: grpc.aio.Server) -> Any:
        """`server` whose `add_generic_rpc_handlers` / `add_registered_method_handlers` register
        observed handlers: pass it to the generated `add_*_to_server` helpers (health, reflection)."""
        return _ObservedServer(server, self)

    def observer(self, method: str, rpc_type: str) -> CallObserver:
        """A new CallObserver of `method`, for a handler that observes its calls itself."""
        return CallObserver(method, rpc_type, tracer=self._tracer)

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler, *, client_streams: bool | None = None
    ) -> grpc.RpcMethodHandler:
        """`handler` of `method` ("/pkg.Service/Name"), each of its calls observed. `client_streams`
        is False for a handler registered with a streaming request that reads its one message
        itself: the call is counted as the unary-request call it is on the wire."""
        field, _ = _FIELDS[(handler.request_streaming, handler.response_streaming)]
        request_streaming = handler.request_streaming if client_streams is None else client_streams
        _, rpc_type = _FIELDS[(request_streaming, handler.response_streaming)]
        behaviour = getattr(handler, field)
        observer = self.observer(method, rpc_type)
        if inspect.isasyncgenfunction(behaviour):
            wrapped: Any = _streaming_responses(observer, behaviour, request_streaming)
        elif inspect.iscoroutinefunction(behaviour):
            wrapped = _single_response(observer, behaviour, request_streaming)
        else:
            return handler  # synchronous handlers are not used on this server
        return handler._replace(**{field: wrapped})


class _ObservedGenericHandler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpcio has no type stubs
    def __init__(self, inner: grpc.GenericRpcHandler, telemetry: Telemetry) -> None:
        self._inner = inner
        self._telemetry = telemetry

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        return self._telemetry.observed(method, self._inner.service(handler_call_details))


class _ObservedServer:
    """Forwards to a grpc.aio.Server, wrapping the handlers registered through it."""

    def __init__(self, server: grpc.aio.Server, telemetry: Telemetry) -> None:
        self._server = server
        self._telemetry = telemetry

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_ObservedGenericHandler(handler, self._telemetry) for handler in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self._telemetry.observed(f"/{service}/{name}", h) for name, h in handlers.items()}
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def begin_call(
    observer: CallObserver, context: Context, metadata: Sequence[tuple[str, str | bytes]]
) -> CallRecord:
    """Start observing a gRPC call whose `metadata` was read from `context`: the request id goes
    back in the trailing metadata, the peer into the access line."""
    call = observer.begin(metadata)
    context.set_trailing_metadata(((REQUEST_ID_HEADER, call.request_id),))
    if observer.log_calls:
        call.peer = context.peer()
    return call


def _begin(observer: CallObserver, context: Context) -> CallRecord:
    return begin_call(observer, context, context.invocation_metadata() or ())


def status_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The status the call ended with, as grpc will send it."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return (
            grpc.StatusCode.DEADLINE_EXCEEDED if context.time_remaining() == 0 else grpc.StatusCode.CANCELLED
        )
    return grpc.StatusCode.UNKNOWN


async def _counted(messages: AsyncIterable[Any], count: Callable[[], None]) -> AsyncIterator[Any]:
    async for message in messages:
        count()
        yield message


def _single_response(
    observer: CallObserver, behaviour: Callable[..., Awaitable[Any]], request_streaming: bool
) -> Callable[[Any, Context], Awaitable[Any]]:
    """Unary and client-streaming calls (and stream handlers written with context.write)."""
    received = observer.metrics.received
    sent = observer.metrics.sent
    streaming = observer.streaming

    async def observed(request: Any, context: Context) -> Any:
        call = _begin(observer, context)
        if streaming:
            await context.send_initial_metadata(((REQUEST_ID_HEADER, call.request_id),))
        if request_streaming:
            request = _counted(request, received)
        else:
            received()
        try:
            response = await behaviour(request, context)
        except BaseException as error:
            observer.finish(call, status_code(context, error))
            raise
        code = status_code(context, None)
        if code is grpc.StatusCode.OK and response is not None:
            sent()
        observer.finish(call, code)
        return response

    return observed


def _streaming_responses(
    observer: CallObserver, behaviour: Callable[..., AsyncIterator[Any]], request_streaming: bool
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    """Server- and bidi-streaming calls. The call is finished from grpc's done-callback: a stream the
    client cancels is often interrupted outside this generator, which then never resumes."""
    received = observer.metrics.received
    sent = observer.metrics.sent

    async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
        call = _begin(observer, context)
        outcome: list[BaseException | None] = []
        context.add_done_callback(lambda ctx: observer.finish(call, _stream_code(ctx, outcome), detach=False))
        await context.send_initial_metadata(((REQUEST_ID_HEADER, call.request_id),))
        if request_streaming:
            request = _counted(request, received)
        else:
            received()
        try:
            async for response in behaviour(request, context):
                sent()
                yield response
        except BaseException as error:
            outcome.append(error)
            raise
        outcome.append(None)

    return observed


def _stream_code(context: Context, outcome: list[BaseException | None]) -> grpc.StatusCode:
    if not outcome:  # the generator never finished: the call was cancelled around it
        return status_code(context, asyncio.CancelledError())
    return status_code(context, outcome[0])
