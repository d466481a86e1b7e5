"""Refused calls are counted by reason (authentication) and by limit (rate, open streams), and logged
with their status; an admitted call's access line names its user."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from tests.eventually import eventually
from tests.prometheus import scrape, value
from tests.servers import ServerProcess, bearer

CREATE = {"grpc_type": "unary", "grpc_service": "taskservice.TaskService", "grpc_method": "CreateTask"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """JWT auth; three calls per user, then a token every 100 s; one open stream per user."""
    proc = ServerProcess.jwt(
        tmp_path_factory.mktemp("guarded"),
        "--rate-limit", "0.01", "--rate-burst", "3", "--max-streams-per-user", "1",
    ).start()  # fmt: skip
    yield proc
    proc.stop()


def _refused(call: object, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        call()  # type: ignore[operator]
    assert failure.value.code() == code


def test_refusals_are_counted_by_reason_and_limit(guarded: ServerProcess) -> None:
    stub = guarded.stub()
    request = pb.CreateTaskRequest(title="guarded")
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    _refused(lambda: stub.CreateTask(request), unauthenticated)
    _refused(lambda: stub.CreateTask(request, metadata=bearer("not-a-jwt")), unauthenticated)
    _refused(lambda: stub.CreateTask(request, metadata=(("authorization", "Basic abc"),)), unauthenticated)
    _refused(
        lambda: stub.CreateTask(request, metadata=bearer(guarded.token("late", ttl=-3600))), unauthenticated
    )

    alice = bearer(guarded.token("alice"))
    for _ in range(3):
        stub.CreateTask(request, metadata=alice)
    _refused(lambda: stub.CreateTask(request, metadata=alice), grpc.StatusCode.RESOURCE_EXHAUSTED)

    bob = bearer(guarded.token("bob"))
    first = stub.WatchTasks(pb.WatchTasksRequest(), metadata=bob)
    first.initial_metadata()  # admitted: the stream is open
    second = stub.WatchTasks(pb.WatchTasksRequest(), metadata=bob)
    _refused(lambda: next(second), grpc.StatusCode.RESOURCE_EXHAUSTED)
    first.cancel()

    s = scrape(guarded)
    assert value(s, "taskservice_auth_failures_total", reason="missing") == 1
    assert value(s, "taskservice_auth_failures_total", reason="malformed") == 2
    assert value(s, "taskservice_auth_failures_total", reason="expired") == 1
    assert value(s, "taskservice_auth_failures_total", reason="bad_signature") == 0
    assert value(s, "taskservice_rate_limited_total", limit="calls") == 1
    assert value(s, "taskservice_rate_limited_total", limit="streams") == 1
    assert value(s, "grpc_server_handled_total", **CREATE, grpc_code="Unauthenticated") == 4
    assert value(s, "grpc_server_handled_total", **CREATE, grpc_code="ResourceExhausted") == 1
    assert value(s, "grpc_server_handled_total", **CREATE, grpc_code="OK") == 3

    def logged_creates() -> list[tuple[str, str]]:
        lines = [json.loads(line) for line in guarded.log().splitlines() if '"event": "rpc"' in line]
        return [(line["code"], line["user"]) for line in lines if line["method"].endswith("/CreateTask")]

    # Access lines are written in batches, up to 50 ms late.
    creates = eventually(logged_creates, lambda c: len(c) >= 8, timeout=5, what="eight access lines")
    assert creates.count(("Unauthenticated", "")) == 4
    assert creates.count(("OK", "alice")) == 3
    assert ("ResourceExhausted", "alice") in creates
