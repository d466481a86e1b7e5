"""With the otel extra, each RPC is a SERVER span continuing the caller's W3C trace, and each store
call a child span. The server runs in this process so an in-memory exporter can collect the spans."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.server import app
from taskservice.server.config import Settings
from tests.servers import ServerProcess

trace = pytest.importorskip("opentelemetry.trace")
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def _calls(tmp_path: Path) -> None:
    settings = Settings(
        grpc_addr="127.0.0.1:0",
        http_addr="127.0.0.1:0",
        store="memory://",
        data_dir=str(tmp_path),
        auth="none",
    )
    server = await app.start(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = rpc.TaskServiceStub(channel)
            traceparent = (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),)
            await stub.CreateTask(pb.CreateTaskRequest(title="traced"), metadata=traceparent)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetTask(pb.GetTaskRequest(id="00000000-0000-7000-8000-000000000000"))
    finally:
        await server.stop()


def test_rpcs_and_store_calls_become_spans_of_the_callers_trace(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    asyncio.run(_calls(tmp_path))

    spans: dict[str, ReadableSpan] = {span.name: span for span in exporter.get_finished_spans()}
    create = spans["taskservice.TaskService/CreateTask"]
    assert create.kind == trace.SpanKind.SERVER
    assert format(create.context.trace_id, "032x") == TRACE_ID
    assert create.parent is not None and format(create.parent.span_id, "016x") == PARENT_ID
    assert create.attributes is not None
    assert create.attributes["rpc.system"] == "grpc"
    assert create.attributes["rpc.method"] == "CreateTask"
    assert create.attributes["rpc.grpc.status_code"] == 0
    store = spans["store.create_many"]
    assert store.parent is not None and store.parent.span_id == create.context.span_id
    assert store.context.trace_id == create.context.trace_id

    get = spans["taskservice.TaskService/GetTask"]
    assert get.parent is None  # no traceparent: a new trace
    assert get.attributes is not None and get.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND


def test_otel_environment_variables_turn_tracing_on_in_the_server(tmp_path: Path) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "taskservice-test"}
    server = ServerProcess(tmp_path / "traced", env=env).start()
    try:
        traceparent = (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"), ("x-request-id", "traced-call"))
        server.stub().CreateTask(pb.CreateTaskRequest(title="traced"), metadata=traceparent)
    finally:
        assert server.stop() == 0
    log = server.log()
    assert '"tracing.enabled"' in log
    assert '"name": "taskservice.TaskService/CreateTask"' in log  # the console exporter's span
    assert '"service.name": "taskservice-test"' in log
    (access,) = [json.loads(line) for line in log.splitlines() if '"request_id": "traced-call"' in line]
    assert access["trace_id"] == TRACE_ID
