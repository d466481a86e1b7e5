"""gRPC-Web on the HTTP port: the browser's way into the same service layer as the gRPC port.

A thin ASGI adapter. It decodes the gRPC-Web framing (each message is a 5-byte prefix — flag byte,
big-endian length — then the message; text mode is the base64 of the same bytes, possibly as several
padded chunks), calls `TaskService`, and answers with data frames followed by one trailer frame
(flag 0x80) holding `grpc-status`, `grpc-message` and `grpc-status-details-bin` as HTTP/1 header text.
Both binary (`application/grpc-web[+proto]`) and text (`application/grpc-web-text[+proto]`) modes
serve unary and server-streaming calls; client and bidirectional streams work too when the whole
request stream is in the body (what Envoy forwards). Status always travels in the trailer frame, so
a client never needs to read a response header to learn the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from starlette.types import Receive, Scope, Send

from taskservice.access.admission import Admission
from taskservice.access.caller import Caller
from taskservice.domain.errors import Code, DomainError, InvalidArgument, ResourceExhausted, Unavailable
from taskservice.telemetry.metrics import MethodMetrics
from taskservice.telemetry.observability import REQUEST_ID_HEADER, CallObserver
from taskservice.transport.body import DEFAULT_TIMEOUT_S, Body, BodyBudget, BodyCutShort, until_disconnect
from taskservice.transport.grpcweb.framing import (
    COMPRESSED_FLAG,
    TRAILER_FLAG,
    Mode,
    ProtocolError,
    decode_frames,
    decode_text,
    encode_frame,
    parse_timeout,
    trailer_block,
)
from taskservice.transport.methods import Method, Reply, until_shutdown
from taskservice.transport.status import grpc_code, internal_status, to_status

log = structlog.get_logger(__name__)

# -- methods --------------------------------------------------------------------------------------


def _parse(request_type: type[Message], payload: bytes) -> Message:
    try:
        return request_type.FromString(payload)
    except (DecodeError, RuntimeError, ValueError):
        raise InvalidArgument.field(
            "request", f"is not a valid {request_type.DESCRIPTOR.full_name} message"
        ) from None


class GrpcWebTransport:
    """ASGI app serving `POST /<package.Service>/<Method>` in gRPC-Web for every method of the API
    table (`transport/methods.py`).

    Admission (authentication, rate limit) is the same object as the gRPC port's, and every call goes
    through `TaskService`, so access rules, validation and events are identical on both ports.
    """

    def __init__(
        self,
        methods: dict[str, Method],
        admission: Admission,
        shutdown: asyncio.Event,
        max_message_bytes: int = 4 * 1024 * 1024,
        *,
        tracer: Any | None = None,
        body_budget: BodyBudget | None = None,
        body_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._admission = admission
        self._shutdown = shutdown
        self._max_message_bytes = max_message_bytes
        self._max_body_bytes = max_message_bytes * 4 // 3 + 64  # text mode inflates by 4/3
        self._body_budget = body_budget or BodyBudget()
        self._body_timeout_s = body_timeout_s
        self._methods = methods
        self._observers = {
            path: CallObserver(path, method.rpc_type, tracer=tracer) for path, method in methods.items()
        }

    @property
    def service_prefixes(self) -> list[str]:
        """`/package.Service/` of every service served, for the HTTP router."""
        return sorted({f"/{method.service}/" for method in self._methods.values()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        mode = Mode.of(headers.get("content-type", ""))
        if scope["method"] != "POST":
            await _plain(send, 405, "gRPC-Web calls use POST\n", [(b"allow", b"POST, OPTIONS")])
            return
        if mode is None:
            await _plain(send, 415, "expected application/grpc-web or application/grpc-web-text\n")
            return
        call = _Call(mode, send)
        peer = scope.get("client") or ("", 0)
        peer_text = f"{peer[0]}:{peer[1]}"
        # The caller is admitted before a byte of the body is read (body.py).
        admitted = self._admit(headers, peer_text) if scope["path"] in self._methods else None
        body = Body(self._body_budget, self._max_body_bytes, self._body_timeout_s)
        content: bytes | DomainError = b""
        if isinstance(admitted, Caller):
            length = headers.get("content-length")
            try:
                content = await self._admission.receiving.receive(
                    admitted, lambda: body.read(receive, length)
                )
            except BodyCutShort:
                body.release()
                return  # the client left before its request was whole: nothing of it runs
        responder = asyncio.ensure_future(
            self._respond(call, scope["path"], headers, admitted, content, peer_text)
        )
        disconnected = asyncio.ensure_future(until_disconnect(receive))
        try:
            await asyncio.wait({responder, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A client that goes away must not leave its watch running on the server.
            for task in (responder, disconnected):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await responder
            with contextlib.suppress(asyncio.CancelledError):
                await disconnected
            body.release()

    def _admit(self, headers: dict[str, str], peer: str) -> Caller | DomainError:
        """The caller, or the error that answers the call (its body is then never read). Headers
        are the call's metadata, exactly as gRPC clients send them on the gRPC port."""
        try:
            return self._admission.admit(headers, lambda: peer)
        except DomainError as error:
            return error

    async def _respond(
        self,
        call: _Call,
        path: str,
        headers: dict[str, str],
        admitted: Caller | DomainError | None,
        body: bytes | DomainError,
        peer: str,
    ) -> None:
        """Run the call under its method's CallObserver (metrics, access line, span), as on the gRPC
        port; a call cancelled by its client's disconnect is observed as CANCELLED."""
        method, observer = self._methods.get(path), self._observers.get(path)
        if method is None or observer is None:  # no series for made-up names
            await call.finish(status_pb2.Status(code=Code.UNIMPLEMENTED, message=f"unknown method {path}"))
            return
        record = observer.begin(headers.items())
        record.peer = peer
        call.request_id = record.request_id
        code = grpc.StatusCode.CANCELLED
        try:
            status = await self._run(call, method, observer.metrics, headers, admitted, body)
            code = grpc_code(status.code)
            await call.finish(status)
        finally:
            observer.finish(record, code)

    async def _run(
        self,
        call: _Call,
        method: Method,
        metrics: MethodMetrics,
        headers: dict[str, str],
        admitted: Caller | DomainError | None,
        body: bytes | DomainError,
    ) -> status_pb2.Status:
        """Admit and run the call, streaming its replies; returns the status that ends it."""
        try:
            if self._shutdown.is_set():
                raise Unavailable("the server is shutting down; retry on another instance or later")
            if headers.get("grpc-encoding", "identity") != "identity":
                return status_pb2.Status(
                    code=Code.UNIMPLEMENTED, message="compressed requests are not supported"
                )
            if not isinstance(admitted, Caller):
                raise admitted or Unavailable("the call was not admitted")
            if isinstance(body, DomainError):
                raise body
            caller = admitted
            payloads = self._payloads(call.mode, body)
            for _ in payloads:
                metrics.received()
            if not method.client_streams and len(payloads) != 1:
                raise InvalidArgument.field("request", "expected exactly one request message")
            release = self._admission.open_stream(caller) if method.is_stream else None
            try:
                if method.server_streams:
                    await call.start()  # headers now, so a client knows an idle watch is connected
                async with asyncio.timeout(parse_timeout(headers.get("grpc-timeout"))):
                    async for reply in self._replies(method, caller, payloads):
                        await call.message(reply)
                        metrics.sent()
            finally:
                if release is not None:
                    release()
            return status_pb2.Status(code=Code.OK)
        except TimeoutError:
            return status_pb2.Status(code=Code.DEADLINE_EXCEEDED, message="deadline exceeded")
        except DomainError as error:
            return to_status(error)
        except ProtocolError as error:
            return to_status(InvalidArgument.field("body", str(error)))
        except Exception:
            log.exception("grpcweb.internal_error", method=method.path)
            return internal_status()

    async def _replies(self, method: Method, caller: Caller, payloads: list[bytes]) -> AsyncIterator[Reply]:
        """Call the method's use case in its shape, yielding what goes back to the client."""
        if method.client_streams:
            request: Any = _errors_in_place(method.request_type, self._metered(caller, payloads))
            if method.ends_at_shutdown:
                request = until_shutdown(self._shutdown, request)
        else:
            request = _parse(method.request_type, payloads[0])
        if method.server_streams:
            async for reply in method.call(caller, request):
                yield reply
        else:
            yield await method.call(caller, request)

    def _payloads(self, mode: Mode, body: bytes) -> list[bytes]:
        raw = decode_text(body) if mode.text else body
        payloads: list[bytes] = []
        for flag, payload in decode_frames(raw):
            if flag & TRAILER_FLAG:
                continue  # a request has no trailers; ignore rather than fail an odd client
            if flag & COMPRESSED_FLAG:
                raise ProtocolError("compressed messages are not supported")
            if len(payload) > self._max_message_bytes:
                raise ResourceExhausted(f"a request message is larger than {self._max_message_bytes} bytes")
            payloads.append(payload)
        return payloads

    async def _metered(self, caller: Caller, payloads: list[bytes]) -> AsyncIterator[bytes]:
        """Each message of a client stream counts against the caller's rate, as on the gRPC port."""
        for payload in payloads:
            await self._admission.message(caller)
            yield payload


async def _errors_in_place(
    request_type: type[Message], payloads: AsyncIterator[bytes]
) -> AsyncIterator[Message | DomainError]:
    """A client stream's messages, one that does not decode replaced by its error, for the use case
    to answer (a command stream answers that command and goes on; a bulk stream stops, saying where)."""
    async for payload in payloads:
        try:
            yield _parse(request_type, payload)
        except InvalidArgument as error:
            yield error


class _Call:
    """The response side of one call: headers once, data frames, then exactly one trailer frame."""

    def __init__(self, mode: Mode, send: Send) -> None:
        self.mode = mode
        self._send = send
        self._started = False
        self.request_id = ""

    async def start(self) -> None:
        if not self._started:
            self._started = True
            headers = [(b"content-type", self.mode.content_type.encode()), (b"cache-control", b"no-store")]
            if self.request_id:
                headers.append((REQUEST_ID_HEADER.encode(), self.request_id.encode("latin-1")))
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def message(self, reply: Reply) -> None:
        await self.start()
        data = reply if isinstance(reply, bytes) else reply.SerializeToString()
        await self._send(
            {"type": "http.response.body", "body": self.mode.wire(encode_frame(data)), "more_body": True}
        )

    async def finish(self, status: status_pb2.Status) -> None:
        await self.start()
        frame = encode_frame(trailer_block(status), TRAILER_FLAG)
        await self._send({"type": "http.response.body", "body": self.mode.wire(frame), "more_body": False})


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})
