"""The wrapper that admits TaskService's streaming calls (server, client and bidirectional): it
authenticates, applies the rate limit to the call (refused when over) and to each message a client
streams (paced to the rate), bounds open streams per user, and passes the Caller to the behaviour
it wraps as its first argument. A server-streaming method is registered with a streaming request and
reads its one message only once the caller is admitted, in one of the caller's receive slots: grpcio
reads a unary request (up to --max-message-bytes) before any handler runs, so a client without a
token could otherwise make the server hold that much for each call it leaves unfinished. It wraps each streaming behaviour once, when the handlers are built,
not per call as a grpc.aio interceptor would. Unary calls are admitted inside their one handler coroutine
(`transport/grpc.py`). Health and reflection are not wrapped: they need no token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeAlias

import grpc
import structlog

from taskservice.access.admission import Admission
from taskservice.access.caller import Caller
from taskservice.domain.errors import DomainError, InvalidArgument
from taskservice.transport.status import abort

log = structlog.get_logger(__name__)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
# A streaming method's behaviour once admitted: (caller, request or request iterator, context).
Behaviour = Callable[[Caller, Any, Context], Any]


def text_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> dict[str, str]:
    """A call's text metadata, as admission reads it (binary `-bin` entries left out)."""
    return {key: value for key, value in metadata if isinstance(value, str)}


async def read_request(context: Context) -> Any:
    """The one request message of a call registered with a streaming request (see above)."""
    request = await context.read()
    if request is grpc.aio.EOF:
        raise InvalidArgument.field("request", "is missing: the call ended before its message")
    return request


class AdmissionGuard:
    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def unary_stream(self, behaviour: Behaviour, **options: Any) -> grpc.RpcMethodHandler:
        """A server-streaming handler that admits its calls, then reads the request, then runs
        `behaviour` (registered as bidirectional: see above)."""
        return grpc.stream_stream_rpc_method_handler(self._unary_stream(behaviour), **options)

    def stream_unary(self, behaviour: Behaviour, **options: Any) -> grpc.RpcMethodHandler:
        """A client-streaming handler that admits its calls and paces their messages."""
        return grpc.stream_unary_rpc_method_handler(self._stream_unary(behaviour), **options)

    def stream_stream(self, behaviour: Behaviour, **options: Any) -> grpc.RpcMethodHandler:
        """A bidirectional handler that admits its calls and paces their messages."""
        return grpc.stream_stream_rpc_method_handler(self._stream_stream(behaviour), **options)

    async def _admit(self, context: Context) -> Caller:
        try:
            caller = self._admission.admit(text_metadata(context.invocation_metadata() or ()), context.peer)
        except DomainError as error:
            await abort(context, error)
            raise
        except Exception:
            log.exception("rpc.admission_failed")
            await abort(context, None)
            raise
        return caller

    def _metered(self, caller: Caller, messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """`messages`, each paced to the caller's rate; as they are when there is no rate to keep."""
        return self._paced(caller, messages) if self._admission.paces_messages else messages

    async def _paced(self, caller: Caller, messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for message in messages:
            await self._admission.message(caller)  # paced to the caller's rate
            yield message

    async def _admit_stream(self, context: Context) -> tuple[Caller, Callable[[], None]]:
        caller = await self._admit(context)
        try:
            return caller, self._admission.open_stream(caller)
        except DomainError as error:
            await abort(context, error)
            raise

    def _unary_stream(self, behaviour: Behaviour) -> Any:
        receive = self._admission.receiving.receive

        async def handle(_: object, context: Context) -> AsyncIterator[Any]:
            caller, release = await self._admit_stream(context)
            try:
                try:
                    request = await receive(caller, lambda: read_request(context))
                except DomainError as error:
                    await abort(context, error)
                    raise
                async for response in behaviour(caller, request, context):
                    yield response
            finally:
                release()

        return handle

    def _stream_unary(self, behaviour: Behaviour) -> Any:
        async def handle(requests: AsyncIterator[Any], context: Context) -> Any:
            caller, release = await self._admit_stream(context)
            try:
                return await behaviour(caller, self._metered(caller, requests), context)
            finally:
                release()

        return handle

    def _stream_stream(self, behaviour: Behaviour) -> Any:
        async def handle(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            caller, release = await self._admit_stream(context)
            try:
                async for response in behaviour(caller, self._metered(caller, requests), context):
                    yield response
            finally:
                release()

        return handle
