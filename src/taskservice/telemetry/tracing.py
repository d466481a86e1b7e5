"""Optional OpenTelemetry tracing (`pip install taskservice[otel]`).

Tracing is on only when the extra is installed and the standard variables ask for it
(`OTEL_TRACES_EXPORTER=otlp|console`, or an `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`), or when the
embedding program already installed a tracer provider. Otherwise `start()` returns None and the
server runs without a single tracing call on its hot path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any

import structlog

log = structlog.get_logger(__name__)

_INSTRUMENTATION = "taskservice"


def _requested() -> list[str]:
    """Exporter names the OTEL_* environment asks for (empty: tracing not requested)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return []
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = ["otlp"]
    return [n for n in names if n != "none"]


def start() -> Any | None:
    """A tracer when tracing is on, else None. Installs a provider built from OTEL_* if none is set."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return trace.get_tracer(_INSTRUMENTATION)  # the embedding program configured tracing
    names = _requested()
    if not names:
        return None
    try:
        provider = _provider(names)
    except Exception as error:  # a missing exporter package must not stop the server
        log.warning("tracing.disabled", reason=str(error))
        return None
    trace.set_tracer_provider(provider)
    log.info("tracing.enabled", exporters=names)
    return trace.get_tracer(_INSTRUMENTATION)


def _provider(names: list[str]) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, but attributes given here
    # would win over them: name the service only when the environment does not.
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": "taskservice"}))
    available = {e.name: e for e in entry_points(group="opentelemetry_traces_exporter")}
    for name in names:
        if name == "otlp":
            http = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").startswith("http")
            name = "otlp_proto_http" if http else "otlp_proto_grpc"
        if name not in available:
            raise LookupError(f"no OpenTelemetry span exporter named {name!r} is installed")
        provider.add_span_processor(BatchSpanProcessor(available[name].load()()))
    return provider


def flush() -> None:
    """Export the spans still queued (at shutdown)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()


def start_call_span(tracer: Any, method: str, metadata: Iterable[tuple[str, str | bytes]], call: Any) -> Any:
    """Open the SERVER span of one RPC, child of the caller's W3C `traceparent` when it sent one, and
    make it current so store spans nest under it. Returns (span, token to detach)."""
    from opentelemetry import context, propagate, trace

    carrier = {key: value for key, value in metadata if isinstance(value, str)}
    service, _, name = method.rpartition("/")
    span = tracer.start_span(
        method,
        context=propagate.extract(carrier),
        kind=trace.SpanKind.SERVER,
        attributes={
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
            "taskservice.request_id": call.request_id,
        },
    )
    return span, context.attach(trace.set_span_in_context(span))


# Server-side codes that mean the server failed (OpenTelemetry's gRPC semantic conventions).
_SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)


def end_call_span(span: Any, token: Any | None, code: Any) -> None:
    from opentelemetry import context, trace

    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code.name in _SERVER_ERRORS:
        span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
    span.end()
    if token is not None:
        context.detach(token)


def trace_id(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


@contextmanager
def store_span(tracer: Any, operation: str) -> Iterator[None]:
    """A CLIENT span around one store call, child of the current RPC span."""
    from opentelemetry import trace

    with tracer.start_as_current_span(
        f"store.{operation}", kind=trace.SpanKind.CLIENT, attributes={"db.operation.name": operation}
    ):
        yield
