"""REST on the HTTP port, as the `.proto` declares it with `google.api.http` (AIP-127 transcoding).

The routes come from the descriptors' HttpRule options, not from a table kept here: a path template
such as `/v1/tasks/{id}:undelete` binds `id` to the request field of that name; with `body: "*"` the
JSON body is the rest of the request, otherwise the query string sets the request's fields (`?statuses=
TASK_STATUS_TODO&statuses=TASK_STATUS_DONE&pageSize=10`, either spelling of a name). JSON is protobuf's
canonical JSON. A route whose method the API table does not implement answers 501.

HTTP conventions on top, applied by field name wherever a message has the field:
- `ETag` carries a returned resource's `version`; `If-Match` sets `expected_version`, and a version
  mismatch then answers 412; `If-None-Match` on a GET answers 304 when it still matches.
- `Idempotency-Key` sets `request_id`.
- PATCH without an `update_mask` takes the mask from the JSON body's keys, so `{"labels": []}` clears.
- Errors: the google.rpc.Status as JSON, with the standard HTTP status of its code; 429 has
  `Retry-After`, 401 has `WWW-Authenticate`.

Server-streaming methods (WatchTasks) are Server-Sent Events: each event's `id:` is its `sequence`,
so `EventSource` resumes with `Last-Event-ID` (it sets `after_sequence`); comment lines keep an idle
stream alive through proxies. EventSource cannot send headers, so these routes also take the token
as `?access_token=`.

Longer than most modules: routing, binding and the REST response conventions (ETag, errors,
Server-Sent Events) are one adapter; what it shares with Connect (admission, observation, bodies)
lives in calls.py and body.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from starlette.types import Receive, Scope, Send

from taskservice.domain.errors import Code, DomainError, InvalidArgument, Unimplemented
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

_VERBS = ("get", "put", "post", "delete", "patch")
_VARIABLE = re.compile(r"\{([A-Za-z_][\w.]*)(?:=([^}]*))?\}")
# Settings outside the request message: these query parameters are never request fields.
_TOKEN_PARAM = "access_token"
# How long an SSE stream waits for its first event or error before answering 200: errors found as
# the stream opens (token, arguments, a resume point no longer kept) get a real HTTP status.
_SSE_SETTLE = 0.25


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP binding of an RPC: its verb, path pattern and how the body maps to the request."""

    verb: str
    template: str
    pattern: re.Pattern[str]
    variables: tuple[str, ...]
    body: str
    descriptor: MethodDescriptor

    @property
    def path(self) -> str:
        """`/package.Service/Method`: the method's key in the API table."""
        return f"/{self.descriptor.containing_service.full_name}/{self.descriptor.name}"

    @property
    def streams(self) -> bool:
        return bool(self.descriptor.server_streaming)


def routes(services: Sequence[ServiceDescriptor]) -> list[Route]:
    """Every `google.api.http` binding of the services' methods (additional bindings included)."""
    found: list[Route] = []
    for service in services:
        for method in service.methods:
            if method.client_streaming:
                continue  # no HTTP/1 request body can carry a stream of messages
            options = method.GetOptions()
            if options.HasExtension(annotations_pb2.http):
                rule = options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    found.append(_route(binding, method))
    return found


def _route(rule: http_pb2.HttpRule, method: MethodDescriptor) -> Route:
    verb = rule.WhichOneof("pattern")
    if verb == "custom":
        verb, template = rule.custom.kind.lower(), rule.custom.path
    elif verb in _VERBS:
        template = getattr(rule, verb)
    else:
        raise ValueError(f"{method.full_name}: an http rule without a pattern")
    regex, last = "", 0
    variables: list[str] = []
    for match in _VARIABLE.finditer(template):
        regex += re.escape(template[last : match.start()])
        segments = match.group(2) or "*"
        parts = ["[^/]+" if s == "*" else ".+" if s == "**" else re.escape(s) for s in segments.split("/")]
        regex += f"(?P<v{len(variables)}>{'/'.join(parts)})"
        variables.append(match.group(1))
        last = match.end()
    regex += re.escape(template[last:])
    return Route(verb.upper(), template, re.compile(f"^{regex}$"), tuple(variables), rule.body, method)


class RestTransport:
    """ASGI app serving the routes of `routes(services)` through the API table's use cases."""

    def __init__(
        self,
        calls: Calls,
        services: Sequence[ServiceDescriptor],
        bodies: BodyLimits,
        *,
        sse_heartbeat: float = 15.0,
    ) -> None:
        self._calls = calls
        self._routes = routes(services)
        self._bodies = bodies
        self._heartbeat = sse_heartbeat

    @property
    def prefixes(self) -> list[str]:
        """The first path segment of every route (`/v1/`), for the HTTP router."""
        return sorted({"/" + r.template.lstrip("/").split("/")[0].split(":")[0] + "/" for r in self._routes})

    @property
    def bound_routes(self) -> list[Route]:
        return list(self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = http_headers(scope)
        response = _Response(send, headers)
        try:
            route, values = self._match(scope["method"], scope["path"])
            if route.streams:
                await self._sse(scope, receive, send, route, values, headers, response)
                return
            async with self._bodies.body() as body:
                length = headers.get("content-length")
                await self._unary(
                    scope, route, values, headers, lambda: body.content(receive, length), response
                )
        except DomainError as error:
            await response.error(error)
        except BodyCutShort:
            return  # the client left before its request was whole: nothing of it ran

    def _match(self, verb: str, path: str) -> tuple[Route, list[str]]:
        allowed: set[str] = set()
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.verb == verb or (verb == "HEAD" and route.verb == "GET" and not route.streams):
                return route, [match.group(f"v{i}") for i in range(len(route.variables))]
            allowed.add(route.verb)
        if allowed:
            raise _MethodNotAllowed(sorted(allowed))
        raise _NoRoute(f"no route for {verb} {path}")

    async def _unary(
        self,
        scope: Scope,
        route: Route,
        values: list[str],
        headers: dict[str, str],
        read: Callable[[], Awaitable[bytes]],
        response: _Response,
    ) -> None:
        """Answer a unary route; its body (`read`) is received only once the caller is admitted."""
        method = self._method(route)
        response.precondition = "if-match" in headers and _has_field(
            method.request_type(), "expected_version"
        )

        async def request() -> Message:
            message = _request(route, values, scope, await read() if route.body else b"")
            _apply_headers(message, headers)
            return message

        reply = await self._calls.unary(
            method, headers, request, peer=peer_of(scope), on_begin=response.began
        )
        await response.message(_decoded(reply, method))

    def _method(self, route: Route) -> Method:
        method = self._calls.methods.get(route.path)
        if method is None:
            raise Unimplemented(f"{route.descriptor.name} is not implemented by this server yet")
        return method

    async def _sse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        values: list[str],
        headers: dict[str, str],
        response: _Response,
    ) -> None:
        method = self._method(route)
        token, request = _sse_request(route, values, scope)
        if token and "authorization" not in headers:
            headers["authorization"] = f"Bearer {token}"
        last_event = headers.get("last-event-id", "").strip()
        if last_event and _has_field(request, "after_sequence"):
            if not last_event.isdigit():
                raise InvalidArgument.field("Last-Event-ID", "must be an event sequence number")
            request.after_sequence = int(last_event)  # type: ignore[attr-defined]
        replies = self._calls.replies(method, headers, request, peer=peer_of(scope), on_begin=response.began)
        queue: asyncio.Queue[Reply | DomainError | None] = asyncio.Queue(maxsize=64)

        async def pump() -> None:
            try:
                async for reply in replies:
                    await queue.put(reply)
                await queue.put(None)
            except DomainError as error:
                await queue.put(error)

        pumping = asyncio.ensure_future(pump())
        disconnected = asyncio.ensure_future(until_disconnect(receive))
        shutdown = asyncio.ensure_future(self._calls.shutdown.wait())
        try:
            first: Reply | DomainError | str | None = "idle"
            with contextlib.suppress(TimeoutError):
                first = await asyncio.wait_for(queue.get(), _SSE_SETTLE)
            if isinstance(first, DomainError):
                await response.error(first)
                return
            await response.start_events()
            pending = [] if first == "idle" else [first]
            await self._events(response, method, queue, pending, {disconnected, shutdown, pumping})
        finally:
            for task in (pumping, disconnected, shutdown):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping

    async def _events(
        self,
        response: _Response,
        method: Method,
        queue: asyncio.Queue[Reply | DomainError | None],
        pending: list[Any],
        stops: set[asyncio.Future[Any]],
    ) -> None:
        """Write events as they come and a heartbeat comment when idle, until the stream ends."""
        while True:
            if pending:
                item = pending.pop(0)
            else:
                getting = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getting, *stops}, timeout=self._heartbeat, return_when=asyncio.FIRST_COMPLETED
                )
                if getting not in done:
                    getting.cancel()
                    if not done:
                        await response.event(b": keep-alive\n\n")
                        continue
                    if not queue.empty():
                        continue  # the pump finished with items still queued
                    await response.end()  # the client left or the server is stopping
                    return
                item = getting.result()
            if item is None:
                await response.end()
                return
            if isinstance(item, DomainError):
                status = to_json(to_status(item)).decode()
                await response.event(f"event: error\ndata: {status}\n\n".encode())
                await response.end()
                return
            message = _decoded(item, method)
            data = to_json(message).decode()
            sequence = getattr(message, "sequence", 0) if _has_field(message, "sequence") else 0
            prefix = f"id: {sequence}\n" if sequence else ""
            await response.event(f"{prefix}data: {data}\n\n".encode())


# -- requests ------------------------------------------------------------------------------------


def _request(route: Route, values: list[str], scope: Scope, body: bytes) -> Message:
    request = GetMessageClass(route.descriptor.input_type)()
    body_keys: list[str] = []
    if route.body:
        document = _json(body)
        if route.body == "*":
            if not isinstance(document, dict):
                raise InvalidArgument.field("body", "must be a JSON object")
            body_keys = list(document)
            _parse(document, request)
        else:
            _set(request, route.body.split("."), document)
    # Query parameters set fields even beside `body: "*"`, so PATCH takes `?update_mask=` (AIP-134).
    for name, query_values in _query(scope).items():
        _set_text(request, name, query_values)
    for name, value in zip(route.variables, values, strict=True):
        _set_text(request, name, [value])
    if route.verb == "PATCH" and _has_field(request, "update_mask"):
        _mask_from_keys(request, body_keys, route.variables)
    return request


def _sse_request(route: Route, values: list[str], scope: Scope) -> tuple[str, Message]:
    query = _query(scope)
    token = query.pop(_TOKEN_PARAM, [""])[-1]
    request = GetMessageClass(route.descriptor.input_type)()
    for name, query_values in query.items():
        _set_text(request, name, query_values)
    for name, value in zip(route.variables, values, strict=True):
        _set_text(request, name, [value])
    return token, request


def _query(scope: Scope) -> dict[str, list[str]]:
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        query.setdefault(name, []).append(value)
    return query


def _json(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument.field("body", "is not valid JSON") from None


def _parse(document: Any, message: Message) -> None:
    try:
        json_format.ParseDict(document, message)
    except (json_format.ParseError, ValueError, TypeError) as error:
        raise InvalidArgument.field("body", str(error)) from None


def _field(message: Message, name: str) -> FieldDescriptor:
    descriptor = message.DESCRIPTOR
    field = descriptor.fields_by_name.get(name) or descriptor.fields_by_camelcase_name.get(name)
    if field is None:
        raise InvalidArgument.field(name, f"is not a field of {descriptor.name}")
    return field  # type: ignore[return-value]


def _set(message: Message, path: list[str], value: Any) -> None:
    """Set the field at a dotted path from a JSON value (canonical JSON rules)."""
    field = _field(message, path[0])
    if len(path) > 1:
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.is_repeated:
            raise InvalidArgument.field(".".join(path), "is not a field of a message")
        _set(getattr(message, field.name), path[1:], value)
        return
    _parse({field.json_name: value}, message)


def _set_text(message: Message, name: str, texts: list[str]) -> None:
    """Set a field from query or path text: `true`/`false`, numbers, enum names, RFC 3339 times."""
    path = name.split(".")
    target = message
    for part in path[:-1]:
        field = _field(target, part)
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.is_repeated:
            raise InvalidArgument.field(name, "is not a field of a message")
        target = getattr(target, field.name)
    field = _field(target, path[-1])
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        raise InvalidArgument.field(name, "maps cannot be set from the query string")
    values: list[Any] = [_bool(name, t) if field.type == FieldDescriptor.TYPE_BOOL else t for t in texts]
    if field.is_repeated:
        _parse_field(target, field, name, values)
    else:
        _parse_field(target, field, name, values[-1])


def _parse_field(message: Message, field: FieldDescriptor, name: str, value: Any) -> None:
    try:
        json_format.ParseDict({field.json_name: value}, message)
    except (json_format.ParseError, ValueError, TypeError) as error:
        reason = str(error).rpartition(": ")[2] if ": " in str(error) else str(error)
        raise InvalidArgument.field(name, f"cannot be {value!r}: {reason}") from None


def _bool(name: str, text: str) -> bool:
    if text in ("true", "1", ""):
        return True
    if text in ("false", "0"):
        return False
    raise InvalidArgument.field(name, "must be true or false")


def _mask_from_keys(request: Message, keys: list[str], variables: tuple[str, ...]) -> None:
    """PATCH without a mask: the body's keys are the fields to change (AIP-134)."""
    if request.HasField("update_mask"):
        return
    skip = {*variables, "update_mask", "expected_version"}
    for key in keys:
        name = _field(request, key).name
        if name not in skip:
            request.update_mask.paths.append(name)  # type: ignore[attr-defined]


def _apply_headers(request: Message, headers: dict[str, str]) -> None:
    """`If-Match` → expected_version, `Idempotency-Key` → request_id, where the request has them."""
    if_match = headers.get("if-match", "").strip()
    if if_match and if_match != "*" and _has_field(request, "expected_version"):
        request.expected_version = _version_tag(if_match, "If-Match")  # type: ignore[attr-defined]
    key = headers.get("idempotency-key", "").strip()
    if key and _has_field(request, "request_id") and not request.request_id:  # type: ignore[attr-defined]
        request.request_id = key  # type: ignore[attr-defined]


def _version_tag(value: str, header: str) -> int:
    tag = value.removeprefix("W/").strip().strip('"')
    if not tag.isdigit() or len(tag) > 18:
        raise InvalidArgument.field(header, 'must be an entity tag such as "3" (a version)')
    return int(tag)


def _has_field(message: Message, name: str) -> bool:
    return name in message.DESCRIPTOR.fields_by_name


def _decoded(reply: Reply, method: Method) -> Message:
    return method.response_type.FromString(reply) if isinstance(reply, bytes) else reply


# -- responses -----------------------------------------------------------------------------------


class _NoRoute(DomainError):
    code = Code.NOT_FOUND


class _MethodNotAllowed(DomainError):
    code = Code.UNIMPLEMENTED

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(f"this path answers {', '.join(allowed)}")
        self.allowed = allowed


class _Response:
    """The response side of one REST call or event stream."""

    def __init__(self, send: Send, headers: dict[str, str]) -> None:
        self._send = send
        self._request_headers = headers
        self.request_id = ""
        self.precondition = False

    def began(self, request_id: str) -> None:
        self.request_id = request_id

    def _headers(self, content_type: bytes) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", content_type)]
        if self.request_id:
            headers.append((b"x-request-id", self.request_id.encode("latin-1")))
        return headers

    async def message(self, message: Message) -> None:
        headers = self._headers(b"application/json")
        etag = _etag(message)
        if etag:
            headers.append((b"etag", etag.encode()))
            if_none_match = self._request_headers.get("if-none-match", "")
            if etag in (t.strip() for t in if_none_match.split(",")):
                await self._send({"type": "http.response.start", "status": 304, "headers": headers[1:]})
                await self._send({"type": "http.response.body", "body": b""})
                return
        body = to_json(message)
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def error(self, error: DomainError) -> None:
        status = http_status(error.code)
        headers = self._headers(b"application/json")
        headers += retry_after_header(error)
        if isinstance(error, _NoRoute):
            status = 404
        elif isinstance(error, _MethodNotAllowed):
            status = 405
            headers.append((b"allow", ", ".join(error.allowed).encode()))
        elif error.code == Code.ABORTED and self.precondition:
            status = 412  # the If-Match version no longer matches
        elif error.code == Code.UNAUTHENTICATED:
            headers.append((b"www-authenticate", b"Bearer"))
        body = to_json(to_status(error))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def start_events(self) -> None:
        headers = self._headers(b"text/event-stream; charset=utf-8")
        headers += [(b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self.event(b"retry: 1000\n\n")

    async def event(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})


def _etag(message: Message) -> str:
    if _has_field(message, "version"):
        version = int(getattr(message, "version"))  # noqa: B009 - any message with a version field
        if version > 0:
            return f'"{version}"'
    return ""
