"""The wrapper that admits TaskService calls of every shape (unary, server, client
and bidirectional streaming): it authenticates, applies the rate limit to the call (refused when
over) and to each message a client streams (paced to the rate), bounds open streams per user, and
hands the Caller to the handler through `CURRENT_CALLER`. It wraps each TaskService handler once,
when it is registered (`add_to_server`), not per call as a grpc.aio interceptor would. Health and
reflection are not wrapped: they need no token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc
import structlog

from taskservice.admission import Admission
from taskservice.auth import CURRENT_CALLER
from taskservice.errors import DomainError
from taskservice.model import Caller
from taskservice.transport.grpc import abort, metadata_of

log = structlog.get_logger(__name__)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class AdmissionGuard:
    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def guarded(self, handlers: dict[str, grpc.RpcMethodHandler]) -> dict[str, grpc.RpcMethodHandler]:
        """TaskService's handlers, each admitting its calls before it runs."""
        return {name: self.guard(handler) for name, handler in handlers.items()}

    def guard(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary_unary(handler.unary_unary), **options)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._unary_stream(handler.unary_stream), **options)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._stream_unary(handler.stream_unary), **options)
        return grpc.stream_stream_rpc_method_handler(self._stream_stream(handler.stream_stream), **options)

    async def _admit(self, context: Context) -> Caller:
        try:
            caller = self._admission.admit(metadata_of(context))
        except DomainError as error:
            await abort(context, error)
            raise
        except Exception:
            log.exception("rpc.admission_failed")
            await abort(context, None)
            raise
        CURRENT_CALLER.set(caller)
        return caller

    async def _metered(self, caller: Caller, messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for message in messages:
            await self._admission.message(caller)  # paced to the caller's rate
            yield message

    def _unary_unary(self, behaviour: Any) -> Any:
        async def handle(request: Any, context: Context) -> Any:
            await self._admit(context)
            return await behaviour(request, context)

        return handle

    async def _admit_stream(self, context: Context) -> tuple[Caller, Callable[[], None]]:
        caller = await self._admit(context)
        try:
            return caller, self._admission.open_stream(caller)
        except DomainError as error:
            await abort(context, error)
            raise

    def _unary_stream(self, behaviour: Any) -> Any:
        async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
            _, release = await self._admit_stream(context)
            try:
                async for response in behaviour(request, context):
                    yield response
            finally:
                release()

        return handle

    def _stream_unary(self, behaviour: Any) -> Any:
        async def handle(requests: AsyncIterator[Any], context: Context) -> Any:
            caller, release = await self._admit_stream(context)
            try:
                return await behaviour(self._metered(caller, requests), context)
            finally:
                release()

        return handle

    def _stream_stream(self, behaviour: Any) -> Any:
        async def handle(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            caller, release = await self._admit_stream(context)
            try:
                async for response in behaviour(self._metered(caller, requests), context):
                    yield response
            finally:
                release()

        return handle
