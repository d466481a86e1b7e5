"""One JSON access line per call, carrying the request id the client sent or got back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from taskservice.api import task_service_pb2 as pb
from tests.eventually import eventually
from tests.servers import ServerProcess

MISSING_ID = "00000000-0000-7000-8000-000000000000"


def log_lines(server: ServerProcess, request_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The server's JSON log lines for one request id (waiting for the line to be written)."""
    return eventually(
        lambda: [
            json.loads(line)
            for line in server.log().splitlines()
            if line.startswith("{") and request_id in line
        ],
        timeout=timeout,
        what=f"the access line of {request_id}",
    )


def test_a_call_logs_one_line_with_the_request_id_it_sent(server: ServerProcess, tag: str) -> None:
    request_id = f"req-{uuid.uuid4()}"
    _, call = server.stub().CreateTask.with_call(
        pb.CreateTaskRequest(title="logged", labels=[tag]), metadata=(("x-request-id", request_id),)
    )
    assert ("x-request-id", request_id) in tuple(call.trailing_metadata())
    (line,) = log_lines(server, request_id)
    assert line["event"] == "rpc"
    assert line["level"] == "info"
    assert line["method"] == "taskservice.TaskService/CreateTask"
    assert line["code"] == "OK"
    assert line["user"] == "anonymous"
    assert line["peer"].startswith("ipv4:127.0.0.1:")
    assert 0 < line["duration_ms"] < 10_000
    assert line["timestamp"].endswith("Z")
    assert "trace_id" not in line  # tracing is off unless OTEL_* variables ask for it


def test_a_failed_call_gets_a_generated_id_next_to_its_error_details(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        server.stub().GetTask(pb.GetTaskRequest(id=MISSING_ID))
    trailers = dict(failure.value.trailing_metadata())
    request_id = trailers["x-request-id"]
    assert len(request_id) == 32
    status = rpc_status.from_call(failure.value)
    assert status is not None and status.code == grpc.StatusCode.NOT_FOUND.value[0]
    (line,) = log_lines(server, request_id)
    assert (line["method"], line["code"]) == ("taskservice.TaskService/GetTask", "NotFound")


def test_a_stream_returns_its_request_id_before_it_ends(server: ServerProcess, tag: str) -> None:
    stream = server.stub().WatchTasks(pb.WatchTasksRequest(labels=[tag]), metadata=(("x-request-id", tag),))
    assert ("x-request-id", tag) in tuple(stream.initial_metadata())
    stream.cancel()
    (line,) = log_lines(server, tag)
    assert (line["method"], line["code"]) == ("taskservice.TaskService/WatchTasks", "Canceled")


def test_lifecycle_lines_name_the_listen_addresses_and_store(server: ServerProcess) -> None:
    for replica in getattr(server, "replicas", [server]):  # replicas on PostgreSQL: one line each
        lines = [json.loads(line) for line in replica.log().splitlines() if line.startswith("{")]
        (listening,) = [line for line in lines if line["event"] == "server.listening"]
        assert listening["grpc"] == replica.grpc_addr
        assert listening["http"] == replica.http_url
        assert listening["store"].startswith(replica.store or "sqlite")


def test_an_oversized_request_id_is_replaced_by_a_generated_one(server: ServerProcess) -> None:
    _, call = server.stub().ListTasks.with_call(
        pb.ListTasksRequest(page_size=1), metadata=(("x-request-id", "x" * 129),)
    )
    request_id = dict(call.trailing_metadata())["x-request-id"]
    assert len(request_id) == 32 and request_id != "x" * 129
    (line,) = log_lines(server, request_id)
    assert line["method"] == "taskservice.TaskService/ListTasks"


def test_log_level_warning_turns_access_lines_off(tmp_path: Path) -> None:
    quiet = ServerProcess(tmp_path / "quiet", "--log-level", "warning").start()
    try:
        _, call = quiet.stub().ListTasks.with_call(pb.ListTasksRequest(page_size=1))
        assert "x-request-id" in dict(call.trailing_metadata())  # ids are still returned
    finally:
        assert quiet.stop() == 0
    assert '"event": "rpc"' not in quiet.log()
