"""The Connect protocol on the HTTP port: every unary and server-streaming method of the API table at
its gRPC path, for plain HTTP clients (curl, `buf curl`, `@connectrpc/connect-web`).

- Unary: `POST /<package.Service>/<Method>` with `application/json` or `application/proto`; the body
  is the request message, the answer the reply (200) or an error (below). Methods the `.proto` marks
  `NO_SIDE_EFFECTS` also answer `GET ?message=…&encoding=json|proto[&base64=1]`, which caches.
- Server streams (WatchTasks): `application/connect+json` or `+proto`; the request is one enveloped
  message (flag byte, 4-byte big-endian length, message), the response enveloped messages ending
  with an end-stream envelope (flag 0x02) holding `{"error": …}` when the call failed.
- Errors: `{"code": "not_found", "message": …, "details": [{"type", "value"}]}` with the standard
  HTTP status of the code (unary), or in the end-stream message (streams).

Compression is not offered: a compressed request answers `unimplemented`. See
docs/decisions/0007-connect-adapter.md for why this is ours rather than the `connectrpc` package.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from google.protobuf import descriptor_pb2, json_format
from google.protobuf.message import DecodeError, Message
from starlette.types import Receive, Scope, Send

from taskservice.domain.errors import DomainError, InvalidArgument, Unimplemented
from taskservice.transport.body import BodyCutShort, BodyLimits, until_disconnect
from taskservice.transport.calls import (
    Calls,
    http_headers,
    http_status,
    peer_of,
    retry_after_header,
    to_json,
)
from taskservice.transport.methods import Method, Reply
from taskservice.transport.status import to_status

_END_STREAM = 0x02
_COMPRESSED = 0x01
_CODE_NAMES = {
    1: "canceled",
    2: "unknown",
    3: "invalid_argument",
    4: "deadline_exceeded",
    5: "not_found",
    6: "already_exists",
    7: "permission_denied",
    8: "resource_exhausted",
    9: "failed_precondition",
    10: "aborted",
    11: "out_of_range",
    12: "unimplemented",
    13: "internal",
    14: "unavailable",
    15: "data_loss",
    16: "unauthenticated",
}
UNARY_TYPES = ("application/json", "application/proto")
STREAM_TYPES = ("application/connect+json", "application/connect+proto")


@dataclass(frozen=True, slots=True)
class Codec:
    """JSON (protobuf's canonical JSON, both field spellings accepted) or binary protobuf."""

    json: bool

    def decode(self, data: bytes, message_type: type[Message]) -> Message:
        message = message_type()
        try:
            if self.json:
                json_format.Parse(data or b"{}", message)
            else:
                message.ParseFromString(data)
        except (json_format.ParseError, DecodeError, ValueError, UnicodeDecodeError) as error:
            name = message_type.DESCRIPTOR.full_name
            reason = str(error) if self.json else "cannot be decoded"
            raise InvalidArgument.field("body", f"is not a valid {name}: {reason}") from None
        return message

    def encode(self, reply: Reply, message_type: type[Message]) -> bytes:
        if self.json:
            message = message_type.FromString(reply) if isinstance(reply, bytes) else reply
            return to_json(message)
        return reply if isinstance(reply, bytes) else reply.SerializeToString()


def error_json(error: DomainError) -> dict[str, Any]:
    """A Connect error: its code's name, the message, and the google.rpc.Status details."""
    status = to_status(error)
    body: dict[str, Any] = {"code": _CODE_NAMES.get(status.code, "unknown"), "message": status.message}
    details = []
    for detail in status.details:
        type_name = detail.type_url.rpartition("/")[2]
        value = base64.b64encode(detail.value).decode().rstrip("=")
        details.append({"type": type_name, "value": value})
    if details:
        body["details"] = details
    return body


class ConnectTransport:
    """ASGI app answering the Connect protocol for the API table's unary and server-stream methods."""

    def __init__(self, calls: Calls, bodies: BodyLimits) -> None:
        self._calls = calls
        self._bodies = bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = http_headers(scope)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        method = self._calls.methods.get(scope["path"])
        try:
            if scope["method"] not in ("GET", "POST"):
                await _plain(send, 405, "Connect calls use POST (or GET)\n", [(b"allow", b"POST, GET")])
            elif scope["method"] == "GET":
                await self._get(scope, method, headers, send)
            elif content_type in STREAM_TYPES:
                await self._stream(
                    scope, receive, send, method, headers, Codec(content_type.endswith("json"))
                )
            elif content_type in UNARY_TYPES:
                codec = Codec(content_type == "application/json")
                async with self._bodies.body() as body:
                    length = headers.get("content-length")
                    await self._unary(
                        scope, send, method, headers, codec, lambda: body.content(receive, length)
                    )
            else:
                await _plain(
                    send, 415, "expected application/json, application/proto or application/connect+…\n"
                )
        except DomainError as error:  # before the call began: the request could not be read
            await _unary_error(send, error, "")
        except BodyCutShort:
            return  # the client left before its request was whole: nothing of it ran

    async def _get(self, scope: Scope, method: Method | None, headers: dict[str, str], send: Send) -> None:
        if method is not None and not _side_effect_free(method):
            await _plain(send, 405, "this method is called with POST\n", [(b"allow", b"POST")])
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        encoding = query.get("encoding", ["json"])[0]
        if encoding not in ("json", "proto"):
            raise InvalidArgument.field("encoding", "must be json or proto")
        if query.get("compression", ["identity"])[0] != "identity":
            raise Unimplemented("compressed requests are not supported")
        message = query.get("message", [""])[0]
        if query.get("base64", [""])[0] == "1":
            try:
                data = base64.urlsafe_b64decode(message + "=" * (-len(message) % 4))
            except ValueError:
                raise InvalidArgument.field("message", "is not valid base64") from None
        else:
            data = message.encode()

        async def query_message() -> bytes:
            return data

        await self._unary(scope, send, method, headers, Codec(encoding == "json"), query_message)

    async def _unary(
        self,
        scope: Scope,
        send: Send,
        method: Method | None,
        headers: dict[str, str],
        codec: Codec,
        read: Callable[[], Awaitable[bytes]],
    ) -> None:
        """Answer a unary call; `read` gives the request's bytes, asked for only once the caller is
        admitted."""
        request_id = ""

        def began(value: str) -> None:
            nonlocal request_id
            request_id = value

        try:
            method = self._unary_method(scope["path"], method)
            if headers.get("content-encoding", "identity") != "identity":
                raise Unimplemented("compressed requests are not supported")
            request_type = method.request_type

            async def request() -> Message:
                return codec.decode(await read(), request_type)

            reply = await self._calls.unary(
                method, headers, request, peer=peer_of(scope), timeout=_timeout(headers), on_begin=began
            )
            data = codec.encode(reply, method.response_type)
        except DomainError as error:
            await _unary_error(send, error, request_id)
            return
        content_type = b"application/json" if codec.json else b"application/proto"
        response_headers = [(b"content-type", content_type), *_request_id_header(request_id)]
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": data})

    def _unary_method(self, path: str, method: Method | None) -> Method:
        if method is None:
            raise Unimplemented(f"unknown method {path}")
        if method.is_stream:
            raise Unimplemented(f"{method.name} is a stream: call it with application/connect+json or +proto")
        return method

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: Method | None,
        headers: dict[str, str],
        codec: Codec,
    ) -> None:
        content_type = b"application/connect+json" if codec.json else b"application/connect+proto"
        unreadable: DomainError | None = None
        async with self._bodies.body() as reading:
            try:  # read whole before anything else listens for a disconnect
                body = await reading.content(receive, headers.get("content-length"))
            except DomainError as error:
                body, unreadable = b"", error
        started = False
        request_id = ""

        def began(value: str) -> None:
            nonlocal request_id
            request_id = value

        async def start() -> None:
            nonlocal started
            if not started:
                started = True
                response_headers = [(b"content-type", content_type), *_request_id_header(request_id)]
                await send({"type": "http.response.start", "status": 200, "headers": response_headers})

        async def respond() -> dict[str, Any]:
            """Stream the replies; the end-stream message's content."""
            try:
                if unreadable is not None:
                    raise unreadable
                if method is None or method.client_streams or not method.server_streams:
                    raise Unimplemented(
                        f"{scope['path']} is not a server stream: call it with application/json or /proto"
                    )
                if headers.get("connect-content-encoding", "identity") != "identity":
                    raise Unimplemented("compressed requests are not supported")
                request = codec.decode(_single_envelope(body), method.request_type)
                replies = self._calls.replies(method, headers, request, peer=peer_of(scope), on_begin=began)
                await start()  # headers now, so a client knows an idle watch is connected
                async for reply in replies:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": _envelope(0, codec.encode(reply, method.response_type)),
                            "more_body": True,
                        }
                    )
                return {}
            except DomainError as error:
                return {"error": error_json(error)}

        responder = asyncio.ensure_future(respond())
        disconnected = asyncio.ensure_future(until_disconnect(receive)) if method is not None else None
        try:
            waiting = {responder} if disconnected is None else {responder, disconnected}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if responder.done():
                end = responder.result()
                await start()
                await send(
                    {"type": "http.response.body", "body": _envelope(_END_STREAM, json.dumps(end).encode())}
                )
        finally:
            # A client that goes away must not leave its watch running on the server.
            for task in (responder, disconnected):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await responder


def _side_effect_free(method: Method) -> bool:
    level = method.descriptor.GetOptions().idempotency_level
    return bool(level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS)


def _timeout(headers: dict[str, str]) -> float | None:
    value = headers.get("connect-timeout-ms", "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 10:
        raise InvalidArgument.field("connect-timeout-ms", "must be a positive integer of at most 10 digits")
    return int(value) / 1000


def _envelope(flags: int, data: bytes) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def _single_envelope(body: bytes) -> bytes:
    """The one request message of a server stream's enveloped body."""
    if len(body) < 5:
        raise InvalidArgument.field("body", "expected one enveloped request message")
    flags, length = struct.unpack(">BI", body[:5])
    if flags & _COMPRESSED:
        raise Unimplemented("compressed messages are not supported")
    if len(body) != 5 + length:
        raise InvalidArgument.field("body", "expected exactly one enveloped request message")
    return body[5:]


def _request_id_header(request_id: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-request-id", request_id.encode("latin-1"))] if request_id else []


async def _unary_error(send: Send, error: DomainError, request_id: str) -> None:
    headers = [
        (b"content-type", b"application/json"),
        *retry_after_header(error),
        *_request_id_header(request_id),
    ]
    await send({"type": "http.response.start", "status": http_status(error.code), "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(error_json(error)).encode()})


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})
