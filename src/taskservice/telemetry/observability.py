"""Logging set-up (structlog) and the per-call record behind the access log.

JSON lines for machines, console output for people. Every RPC, whatever its transport, is watched by
the `CallObserver` of its method: it counts the call in the metrics, opens a trace span when tracing is
on, and writes one access line when the call ends. While the call runs its `CallRecord` sits in a
context variable: the transport's authentication step notes the user on it, and every log line written
meanwhile carries its `request_id`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from taskservice.telemetry import metrics, tracing
from taskservice.telemetry.accesslog import access_log

REQUEST_ID_HEADER = "x-request-id"
_MAX_REQUEST_ID = 128


@dataclass(slots=True)
class CallRecord:
    """What the access log says about one call, gathered while it runs."""

    request_id: str
    user: str = ""
    peer: str = ""
    started: float = field(default_factory=time.perf_counter)
    span: Any = None  # the trace span, when tracing is on
    span_token: Any = None


current_call: ContextVar[CallRecord | None] = ContextVar("taskservice_call", default=None)


def request_id_from(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The caller's `x-request-id` when it sent a usable one, else a new random id."""
    for key, value in metadata:
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= _MAX_REQUEST_ID:
            return value
    return os.urandom(16).hex()


def note_user(user_id: str) -> None:
    """Record who the current call is on behalf of (called by transports once they authenticate)."""
    call = current_call.get()
    if call is not None:
        call.user = user_id


# Health probes arrive every few seconds: their access lines are DEBUG so INFO logs stay readable.
_QUIET_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class CallObserver:
    """Observes every call of one method, for any transport: metrics, trace span, access line.

    A transport makes one per method and, per call::

        call = observer.begin(metadata)   # (key, value) pairs; reads x-request-id and traceparent
        call.peer = "ipv4:10.0.0.7:51344"
        ...                               # run the call; authentication calls note_user(user_id)
        observer.finish(call, grpc.StatusCode.OK)

    counting request/response messages with `observer.metrics.received()` / `.sent()`, and returning
    `call.request_id` to the client as `x-request-id`.
    """

    def __init__(self, full_method: str, rpc_type: str, *, tracer: Any | None = None) -> None:
        self.method = full_method.lstrip("/")
        self.metrics = metrics.for_method(full_method, rpc_type)
        self._level = logging.DEBUG if full_method in _QUIET_METHODS else logging.INFO
        self.log_calls = access_log.enabled(self._level)
        self._tracer = tracer
        self.streaming = rpc_type != "unary"

    def begin(self, metadata: Iterable[tuple[str, str | bytes]]) -> CallRecord:
        """Start a call: count it, give it a request id, open its span; it becomes the current call."""
        call = CallRecord(request_id_from(metadata))
        current_call.set(call)
        self.metrics.started()
        if self.streaming:
            self.metrics.stream_opened()
        if self._tracer is not None:
            call.span, call.span_token = tracing.start_call_span(self._tracer, self.method, metadata, call)
        return call

    def finish(self, call: CallRecord, code: grpc.StatusCode, *, detach: bool = True) -> None:
        """End a call with its status: record the metrics, end the span, write the access line.
        `detach=False` when finishing outside the call's own context (a done-callback)."""
        seconds = time.perf_counter() - call.started
        self.metrics.handled(code, seconds)
        if self.streaming:
            self.metrics.stream_closed()
        if call.span is not None:
            tracing.end_call_span(call.span, call.span_token if detach else None, code)
        if self.log_calls:
            access_log.write(
                self._level,
                self.method,
                metrics.CODE_NAMES[code],
                seconds,
                call.user,
                call.peer,
                call.request_id,
                tracing.trace_id(call.span) if call.span is not None else None,
            )


def _add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if "request_id" not in event:
        call = current_call.get()
        if call is not None:
            event["request_id"] = call.request_id
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    level_number = logging.getLevelName(level.upper())
    access_log.configure(level_number, fmt == "json", sys.stderr)
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_request_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
