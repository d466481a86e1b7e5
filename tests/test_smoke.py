"""The server starts, answers every RPC shape, and reports health."""

from __future__ import annotations

import urllib.request

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.servers import ServerProcess


def test_healthz_answers_ok(server: ServerProcess) -> None:
    with urllib.request.urlopen(f"{server.http_url}/healthz") as answer:
        assert answer.status == 200


def test_create_then_get_returns_the_same_task(stub: rpc.TaskServiceStub, tag: str) -> None:
    created = stub.CreateTask(pb.CreateTaskRequest(title="write tests", labels=[tag]))
    assert stub.GetTask(pb.GetTaskRequest(id=created.id)) == created
