"""A watch lives no longer than its token: when the token expires (plus the allowed clock skew),
the stream ends with UNAUTHENTICATED saying where to resume, on gRPC and on gRPC-Web."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import httpx
import pytest

from taskservice.api import task_service_pb2 as pb
from tests.servers import ServerProcess, bearer
from tests.test_grpcweb import BINARY, Reply, frame

TTL = 3


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess.jwt(tmp_path_factory.mktemp("expiry"), "--jwt-leeway", "1").start()
    yield server
    server.stop()


def test_an_idle_grpc_watch_ends_unauthenticated_when_its_token_expires(strict_server: ServerProcess) -> None:
    token = strict_server.token("watcher", ttl=TTL)
    started = time.monotonic()
    stream = strict_server.stub().WatchTasks(pb.WatchTasksRequest(), metadata=bearer(token), timeout=30)
    with pytest.raises(grpc.RpcError) as ended:
        list(stream)
    elapsed = time.monotonic() - started
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED, ended.value.details()
    assert "expired" in (ended.value.details() or "") and "after_sequence" in (ended.value.details() or "")
    assert TTL - 1 <= elapsed <= TTL + 1 + 3, elapsed  # exp, plus the 1 s leeway, plus slack


def test_a_busy_grpc_watch_ends_too(strict_server: ServerProcess, tag: str) -> None:
    token = strict_server.token("busy", ttl=TTL)
    stub = strict_server.stub()
    stream = stub.WatchTasks(pb.WatchTasksRequest(labels=[tag]), metadata=bearer(token), timeout=30)
    writer = bearer(strict_server.token("busy", ttl=60))
    received = 0
    with pytest.raises(grpc.RpcError) as ended:
        stub.CreateTask(pb.CreateTaskRequest(title="first", labels=[tag]), metadata=writer)
        for _ in stream:
            received += 1
            stub.CreateTask(pb.CreateTaskRequest(title="more", labels=[tag]), metadata=writer)
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert received > 0


def test_a_grpc_web_watch_ends_unauthenticated_when_its_token_expires(strict_server: ServerProcess) -> None:
    token = strict_server.token("web-watcher", ttl=TTL)
    answer = httpx.post(
        f"{strict_server.http_url}/taskservice.TaskService/WatchTasks",
        content=frame(pb.WatchTasksRequest()),
        headers={"content-type": BINARY, "authorization": f"Bearer {token}"},
        timeout=30,
    )
    reply = Reply(answer.content)
    assert reply.code == grpc.StatusCode.UNAUTHENTICATED.value[0], reply.message
    assert "after_sequence" in reply.message
