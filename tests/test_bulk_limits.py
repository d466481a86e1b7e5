"""BulkCreateTasks at its limits: the documented maximum answers a default client, and a stream
that fails part-way says exactly which items were stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.mounts import tmpfs
from tests.postgres import Database, require_postgres
from tests.servers import ServerProcess

SERVICE = "/taskservice.TaskService/"
DEFAULT_CLIENT_LIMIT = 4 * 1024 * 1024


def test_the_documented_maximum_of_minimal_items_answers_a_default_client(
    stub: rpc.TaskServiceStub, tag: str
) -> None:
    """100,000 items (the default --max-bulk-items) on a default grpcio channel: OK, every task
    listed, by id only, so the answer stays under the client's 4 MiB."""
    items = (pb.CreateTaskRequest(title="m", labels=[tag]) for _ in range(100_000))
    response = stub.BulkCreateTasks(items, timeout=120)
    assert response.success_count == 100_000 and not response.errors
    assert len(response.tasks) == 100_000 and len({t.id for t in response.tasks}) == 100_000
    assert all(task.version == 0 and not task.title for task in response.tasks)  # ids only
    assert response.ByteSize() < DEFAULT_CLIENT_LIMIT
    assert stub.GetTask(pb.GetTaskRequest(id=response.tasks[-1].id)).title == "m"


def _largest(tag: str, n: int) -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(
        title="t" * 200,
        description="d" * 20_000,
        labels=[tag, *(f"{n}-{i}".ljust(64, "l") for i in range(49))],
        metadata={f"k{i}".ljust(128, "k"): "v" * 2048 for i in range(64)},
    )


def test_maximum_size_tasks_answer_a_default_client(stub: rpc.TaskServiceStub, tag: str) -> None:
    """Maximum-size tasks pass 4 MiB from about 25 items on: 40 of them are listed by id."""
    small = stub.BulkCreateTasks((_largest(tag, n) for n in range(10)), timeout=60)
    assert [task.version for task in small.tasks] == [1] * 10  # under the budget: whole tasks
    response = stub.BulkCreateTasks((_largest(tag, n) for n in range(40)), timeout=60)
    assert response.success_count == 40 and len(response.tasks) == 40
    assert all(task.version == 0 and task.id for task in response.tasks)
    assert response.ByteSize() < DEFAULT_CLIENT_LIMIT
    assert len(stub.GetTask(pb.GetTaskRequest(id=response.tasks[39].id)).description) == 20_000


def _interruption(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type,unused-ignore]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.reason == "BULK_STREAM_INTERRUPTED":
            return dict(info.metadata)
    raise AssertionError(f"no ErrorInfo in {status}")


def _count(stub: rpc.TaskServiceStub, tag: str) -> int:
    listed: pb.ListTasksResponse = stub.ListTasks(pb.ListTasksRequest(labels=[tag]), timeout=10)
    return listed.total_count


def test_a_malformed_message_after_1200_good_ones_says_what_was_stored(
    server: ServerProcess, stub: rpc.TaskServiceStub, tag: str
) -> None:
    good = [pb.CreateTaskRequest(title=f"ok {i}", labels=[tag]).SerializeToString() for i in range(1200)]
    bad = pb.CreateTaskRequest(title="", labels=[tag]).SerializeToString()  # rejected, not stored
    messages = [*good[:10], bad, *good[10:], b"\xff\xff"]
    with pytest.raises(grpc.RpcError) as stopped:
        server.channel().stream_unary(SERVICE + "BulkCreateTasks")(iter(messages), timeout=30)
    assert stopped.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[1201]" in (stopped.value.details() or "")
    info = _interruption(stopped.value)
    stored = _count(stub, tag)
    assert stored > 0 and info["stored"] == str(stored) and info["rejected"] == "1"
    assert int(info["handled"]) == stored + 1  # items before it: stored, or rejected (one)
    assert stub.GetTask(pb.GetTaskRequest(id=info["last_stored_id"])).title == f"ok {stored - 1}"


@pytest.fixture(params=["sqlite", "postgres"])
def limited_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    database = None
    if request.param == "postgres":
        require_postgres()
        database = Database().create()
    server = ServerProcess(
        tmp_path / "server", "--max-bulk-items", "1200", store=database.url if database else None
    ).start()
    try:
        yield server
    finally:
        server.stop()
        if database is not None:
            database.drop()


def test_item_1201_over_the_limit_says_what_was_stored(limited_server: ServerProcess, tag: str) -> None:
    stub = limited_server.stub()
    items = (pb.CreateTaskRequest(title=f"ok {i}", labels=[tag]) for i in range(1201))
    with pytest.raises(grpc.RpcError) as stopped:
        stub.BulkCreateTasks(items, timeout=30)
    assert stopped.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = _interruption(stopped.value)
    stored = _count(stub, tag)
    assert info == {
        "handled": str(stored),
        "stored": str(stored),
        "rejected": "0",
        "first_stored_id": info["first_stored_id"],
        "last_stored_id": info["last_stored_id"],
    }
    assert stored in (1000, 1200)  # whole chunks of 500 commit as they go; the rest is not stored
    assert "nothing from index" in (stopped.value.details() or "")


def test_a_disk_filling_during_the_stream_says_what_was_stored(tmp_path: Path, tag: str) -> None:
    with tmpfs(tmp_path / "volume", size="4m") as volume:
        server = ServerProcess(tmp_path / "data", store=f"sqlite:///{volume}/tasks.db").start()
        try:
            stub = server.stub()
            items = (
                pb.CreateTaskRequest(title=f"ok {i}", description="x" * 2000, labels=[tag])
                for i in range(5000)
            )
            with pytest.raises(grpc.RpcError) as stopped:
                stub.BulkCreateTasks(items, timeout=60)
            assert stopped.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "disk is full" in (stopped.value.details() or "")
            info = _interruption(stopped.value)
            stored = _count(stub, tag)
            assert info["stored"] == info["handled"] == str(stored)
        finally:
            server.stop()
