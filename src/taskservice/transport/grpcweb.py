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
import base64
import binascii
import contextlib
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
import structlog
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from starlette.types import Receive, Scope, Send

from taskservice.access.admission import Admission
from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import Code, DomainError, InvalidArgument, ResourceExhausted, Unavailable
from taskservice.domain.service import TaskService
from taskservice.telemetry.metrics import MethodMetrics
from taskservice.telemetry.observability import REQUEST_ID_HEADER, CallObserver
from taskservice.transport.status import grpc_code, internal_status, to_status

log = structlog.get_logger(__name__)

SERVICE_PATH = "/" + pb.DESCRIPTOR.services_by_name["TaskService"].full_name + "/"
TRAILER_FLAG = 0x80
COMPRESSED_FLAG = 0x01
_PREFIX = struct.Struct(">BI")
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class ProtocolError(Exception):
    """The request is not well-formed gRPC-Web (answered with INVALID_ARGUMENT, never a stack)."""


# -- framing --------------------------------------------------------------------------------------


def encode_frame(payload: bytes, flag: int = 0) -> bytes:
    return _PREFIX.pack(flag, len(payload)) + payload


def decode_frames(body: bytes) -> list[tuple[int, bytes]]:
    """Split a request body into (flag, payload) frames; a truncated frame is a protocol error."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < _PREFIX.size:
            raise ProtocolError("truncated frame header")
        flag, length = _PREFIX.unpack_from(body, offset)
        offset += _PREFIX.size
        if len(body) - offset < length:
            raise ProtocolError("truncated frame")
        frames.append((flag, body[offset : offset + length]))
        offset += length
    return frames


def decode_text(body: bytes) -> bytes:
    """Base64-decode a text-mode body that may be several independently padded chunks."""
    text = re.sub(rb"\s+", b"", body)
    if len(text) % 4:
        raise ProtocolError("text-mode body is not whole base64 quanta")
    try:
        if b"=" not in text[:-2]:
            return base64.b64decode(text, validate=True)
        # Padding inside the body: each chunk was encoded alone; decode quantum by quantum.
        return b"".join(base64.b64decode(text[i : i + 4], validate=True) for i in range(0, len(text), 4))
    except binascii.Error as error:
        raise ProtocolError("text-mode body is not valid base64") from error


def trailer_block(status: status_pb2.Status) -> bytes:
    """The trailer frame payload: `name: value\\r\\n` lines, message percent-encoded as gRPC requires."""
    lines = [f"grpc-status: {status.code}"]
    if status.message:
        lines.append("grpc-message: " + quote(status.message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"))
    if status.code != Code.OK:
        details = base64.b64encode(status.SerializeToString()).rstrip(b"=").decode()
        lines.append(f"grpc-status-details-bin: {details}")
    return "".join(line + "\r\n" for line in lines).encode()


def parse_timeout(value: str | None) -> float | None:
    """Seconds from a `grpc-timeout` header (e.g. `250m`), or None when absent or malformed."""
    match = _TIMEOUT.match(value or "")
    return int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)] if match else None


@dataclass(frozen=True, slots=True)
class Mode:
    """Binary or text mode, chosen by the request's content type and echoed in the response."""

    text: bool

    @classmethod
    def of(cls, content_type: str) -> Mode | None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media in ("application/grpc-web", "application/grpc-web+proto"):
            return cls(text=False)
        if media in ("application/grpc-web-text", "application/grpc-web-text+proto"):
            return cls(text=True)
        return None

    @property
    def content_type(self) -> str:
        return "application/grpc-web-text+proto" if self.text else "application/grpc-web+proto"

    def wire(self, data: bytes) -> bytes:
        return base64.b64encode(data) if self.text else data


# -- methods --------------------------------------------------------------------------------------

Reply = Message | bytes
# Single-request methods get the one payload in a list; client streams get them as they are paced.
Handler = Callable[[Caller, Any], AsyncIterator[Reply]]


@dataclass(frozen=True, slots=True)
class _Method:
    request_type: type[Message]
    handler: Handler
    single_request: bool = True
    server_streams: bool = False

    @property
    def rpc_type(self) -> str:
        """The method's shape as the metrics name it (the same series as the gRPC port's)."""
        if self.single_request:
            return "server_stream" if self.server_streams else "unary"
        return "bidi_stream" if self.server_streams else "client_stream"

    @property
    def is_stream(self) -> bool:
        """Holds one of the caller's stream slots while open, as on the gRPC port."""
        return self.server_streams or not self.single_request


def _parse(request_type: type[Message], payload: bytes) -> Message:
    try:
        return request_type.FromString(payload)
    except (DecodeError, RuntimeError, ValueError):
        raise InvalidArgument.field(
            "request", f"is not a valid {request_type.DESCRIPTOR.full_name} message"
        ) from None


class GrpcWebTransport:
    """ASGI app serving `POST /taskservice.TaskService/<Method>` in gRPC-Web.

    Admission (authentication, rate limit) is the same object as the gRPC port's, and every call goes
    through `TaskService`, so access rules, validation and events are identical on both ports.
    """

    def __init__(
        self,
        service: TaskService,
        admission: Admission,
        shutdown: asyncio.Event,
        max_message_bytes: int = 4 * 1024 * 1024,
        *,
        tracer: Any | None = None,
    ) -> None:
        self._service = service
        self._admission = admission
        self._shutdown = shutdown
        self._max_message_bytes = max_message_bytes
        self._methods = self._method_table()
        self._observers = {
            name: CallObserver(SERVICE_PATH + name, method.rpc_type, tracer=tracer)
            for name, method in self._methods.items()
        }

    def _method_table(self) -> dict[str, _Method]:
        s = self._service

        def unary(call: Callable[[Caller, Any], Awaitable[Reply]], request_type: type[Message]) -> _Method:
            async def handle(caller: Caller, payloads: list[bytes]) -> AsyncIterator[Reply]:
                yield await call(caller, _parse(request_type, payloads[0]))

            return _Method(request_type, handle)

        async def delete(caller: Caller, request: pb.DeleteTaskRequest) -> Message:
            await s.delete(caller, request)
            return empty_pb2.Empty()

        async def watch(caller: Caller, payloads: list[bytes]) -> AsyncIterator[Reply]:
            async for event in s.watch(caller, _parse(pb.WatchTasksRequest, payloads[0])):  # type: ignore[arg-type]
                yield event

        async def bulk_create(caller: Caller, payloads: AsyncIterator[bytes]) -> AsyncIterator[Reply]:
            yield await s.bulk_create(caller, _messages(pb.CreateTaskRequest, payloads))

        async def process(caller: Caller, payloads: AsyncIterator[bytes]) -> AsyncIterator[Reply]:
            async for result in s.process(caller, _messages(pb.TaskCommand, payloads)):
                yield result

        return {
            "CreateTask": unary(s.create, pb.CreateTaskRequest),
            "GetTask": unary(s.get, pb.GetTaskRequest),
            "UpdateTask": unary(s.update, pb.UpdateTaskRequest),
            "DeleteTask": unary(delete, pb.DeleteTaskRequest),
            "ListTasks": unary(s.list, pb.ListTasksRequest),
            "WatchTasks": _Method(pb.WatchTasksRequest, watch, server_streams=True),
            "BulkCreateTasks": _Method(pb.CreateTaskRequest, bulk_create, single_request=False),
            "ProcessTaskStream": _Method(pb.TaskCommand, process, single_request=False, server_streams=True),
        }

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
        body = await self._read_body(receive)
        peer = scope.get("client") or ("", 0)
        responder = asyncio.ensure_future(
            self._respond(call, scope["path"], headers, body, f"{peer[0]}:{peer[1]}")
        )
        disconnected = asyncio.ensure_future(_disconnect(receive))
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

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole request body, or None once it exceeds the message limit (4 MiB by default)."""
        chunks: list[bytes] = []
        size = 0
        limit = self._max_message_bytes * 4 // 3 + 64  # text mode inflates by 4/3
        too_big = False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None if too_big else b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                too_big = True
                chunks.clear()
            elif not too_big:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return None if too_big else b"".join(chunks)

    async def _respond(
        self, call: _Call, path: str, headers: dict[str, str], body: bytes | None, peer: str
    ) -> None:
        """Run the call under its method's CallObserver (metrics, access line, span), as on the gRPC
        port; a call cancelled by its client's disconnect is observed as CANCELLED."""
        name = path.removeprefix(SERVICE_PATH)
        method, observer = self._methods.get(name), self._observers.get(name)
        if method is None or observer is None:  # no series for made-up names
            await call.finish(status_pb2.Status(code=Code.UNIMPLEMENTED, message=f"unknown method {path}"))
            return
        record = observer.begin(headers.items())
        record.peer = peer
        call.request_id = record.request_id
        code = grpc.StatusCode.CANCELLED
        try:
            status = await self._run(call, method, observer.metrics, headers, body)
            code = grpc_code(status.code)
            await call.finish(status)
        finally:
            observer.finish(record, code)

    async def _run(
        self,
        call: _Call,
        method: _Method,
        metrics: MethodMetrics,
        headers: dict[str, str],
        body: bytes | None,
    ) -> status_pb2.Status:
        """Admit and run the call, streaming its replies; returns the status that ends it."""
        try:
            if self._shutdown.is_set():
                raise Unavailable("the server is shutting down; retry on another instance or later")
            if headers.get("grpc-encoding", "identity") != "identity":
                return status_pb2.Status(
                    code=Code.UNIMPLEMENTED, message="compressed requests are not supported"
                )
            if body is None:
                raise ResourceExhausted(f"the request is larger than {self._max_message_bytes} bytes")
            payloads = self._payloads(call.mode, body)
            for _ in payloads:
                metrics.received()
            if method.single_request and len(payloads) != 1:
                raise InvalidArgument.field("request", "expected exactly one request message")
            # Headers are the call's metadata, exactly as gRPC clients send them on the gRPC port.
            caller = self._admission.admit(headers)
            release = self._admission.open_stream(caller) if method.is_stream else None
            try:
                requests = payloads if method.single_request else self._metered(caller, payloads)
                replies = method.handler(caller, requests)
                if method.server_streams:
                    await call.start()  # headers now, so a client knows an idle watch is connected
                async with asyncio.timeout(parse_timeout(headers.get("grpc-timeout"))):
                    async for reply in replies:
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
            log.exception("grpcweb.internal_error", method=method.request_type.DESCRIPTOR.full_name)
            return internal_status()

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


async def _messages(request_type: type[Message], payloads: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    async for payload in payloads:
        yield _parse(request_type, payload)


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


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
