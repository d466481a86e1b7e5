"""Running one call of the API table for the HTTP-and-JSON transports (Connect, REST, SSE).

Each of those protocols decodes its request in its own way, then hands the request message here:
the call is observed (metrics, access line, span) under the method's name exactly as on the gRPC
port, admitted by the shared `Admission` (token, rate, per-user stream slots) and answered by the
method's use case. Failures come out as `DomainError`s, which each protocol writes in its own error
format, with the HTTP status of `http_status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import structlog
from google.protobuf import json_format
from google.protobuf.message import Message

from taskservice.access.admission import Admission
from taskservice.access.caller import Caller
from taskservice.domain.errors import (
    Code,
    DeadlineExceeded,
    DomainError,
    Internal,
    ResourceExhausted,
    Unavailable,
)
from taskservice.telemetry.metrics import MethodMetrics
from taskservice.telemetry.observability import CallObserver
from taskservice.transport.methods import Method, Reply
from taskservice.transport.status import grpc_code

log = structlog.get_logger(__name__)

# The standard mapping of google.rpc.Code to HTTP status (google/rpc/code.proto; Connect uses the same).
HTTP_STATUS: Mapping[int, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    15: 500,  # DATA_LOSS
    Code.UNAUTHENTICATED: 401,
}


# A request message, or how to read it once the caller is admitted (a body not yet received).
Request = Message | Callable[[], Awaitable[Message]]


def to_json(message: Message) -> bytes:
    """A message as protobuf's canonical JSON (lowerCamel names), compact."""
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":"), ensure_ascii=False).encode()


def http_status(code: int) -> int:
    return HTTP_STATUS.get(code, 500)


def retry_after_header(error: DomainError) -> list[tuple[bytes, bytes]]:
    """`Retry-After` (whole seconds, at least 1) for a rate-limited call; nothing otherwise."""
    if isinstance(error, ResourceExhausted) and error.retry_after is not None:
        return [(b"retry-after", str(max(1, math.ceil(error.retry_after))).encode())]
    return []


def http_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """A request's headers as the call's metadata, lower-cased, as gRPC clients send them."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def peer_of(scope: Mapping[str, Any]) -> str:
    host, port = scope.get("client") or ("", 0)
    return f"{host}:{port}"


class Calls:
    """Observed, admitted calls of the API table's methods, by path."""

    def __init__(
        self,
        methods: Mapping[str, Method],
        admission: Admission,
        shutdown: asyncio.Event,
        *,
        tracer: Any | None = None,
    ) -> None:
        self.methods = methods
        self.shutdown = shutdown
        self._admission = admission
        self._observers = {
            path: CallObserver(path, method.rpc_type, tracer=tracer) for path, method in methods.items()
        }

    async def unary(
        self,
        method: Method,
        headers: Mapping[str, str],
        request: Request,
        *,
        peer: str,
        timeout: float | None = None,  # noqa: ASYNC109 - the client's deadline, from its header
        on_begin: Callable[[str], None] | None = None,
    ) -> Reply:
        """The reply of a unary call; raises the DomainError that ended it. `timeout` in seconds.
        A `request` given as a coroutine function is read only once the caller is admitted, within
        their receive slots: a body is never buffered for a caller without a valid token."""
        async with self._admitted(method, headers, peer, on_begin) as (caller, metrics):
            if not isinstance(request, Message):
                request = await self._admission.receiving.receive(caller, request)
            try:
                async with asyncio.timeout(timeout):
                    reply: Reply = await method.call(caller, request)
            except TimeoutError:
                raise DeadlineExceeded("deadline exceeded") from None
            metrics.sent()
        return reply

    async def replies(
        self,
        method: Method,
        headers: Mapping[str, str],
        request: Message,
        *,
        peer: str,
        on_begin: Callable[[str], None] | None = None,
    ) -> AsyncIterator[Reply]:
        """The replies of a server-streaming call; raises the DomainError that ended it."""
        async with self._admitted(method, headers, peer, on_begin) as (caller, metrics):
            async for reply in method.call(caller, request):
                yield reply
                metrics.sent()

    @contextlib.asynccontextmanager
    async def _admitted(
        self,
        method: Method,
        headers: Mapping[str, str],
        peer: str,
        on_begin: Callable[[str], None] | None,
    ) -> AsyncIterator[tuple[Caller, MethodMetrics]]:
        """Observe the call and admit its caller (holding a stream slot for streams) around its body.

        `on_begin(request_id)` learns the call's request id first, so the response can carry it.
        Anything but a DomainError is logged and becomes INTERNAL, with nothing of the exception."""
        observer = self._observers[method.path]
        record = observer.begin(headers.items())
        record.peer = peer
        if on_begin is not None:
            on_begin(record.request_id)
        code = grpc.StatusCode.CANCELLED
        try:
            if self.shutdown.is_set():
                raise Unavailable("the server is shutting down; retry on another instance or later")
            observer.metrics.received()
            caller = self._admission.admit(headers, lambda: peer)
            release = self._admission.open_stream(caller) if method.is_stream else None
            try:
                yield caller, observer.metrics
            finally:
                if release is not None:
                    release()
            code = grpc.StatusCode.OK
        except DomainError as error:
            code = grpc_code(error.code)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("http.internal_error", method=method.path)
            raise Internal("internal error") from None
        finally:
            observer.finish(record, code)
