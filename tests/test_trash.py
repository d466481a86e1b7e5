"""The trash is purged `--trash-days` after deletion, by the server's retention loop; until then a
deleted task survives restarts and can be restored. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from tests.postgres import Database, require_postgres
from tests.rpc import expect_code
from tests.servers import ServerProcess


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    require_postgres()
    database = Database().create()
    yield database.url
    database.drop()


def test_the_trash_is_purged_after_trash_days(tmp_path: Path, store_url: str | None) -> None:
    def run(trash_days: str) -> ServerProcess:
        return ServerProcess(tmp_path / "data", "--trash-days", trash_days, store=store_url).start()

    server = run("30")
    stub = server.stub()
    kept, restored = (stub.CreateTask(pb.CreateTaskRequest(title=title)) for title in ("kept", "restored"))
    for task in (kept, restored):
        stub.DeleteTask(pb.DeleteTaskRequest(id=task.id))
    server.stop()

    server = run("30")  # the retention loop runs at start: a day-old trash is not due yet
    stub = server.stub()
    assert stub.GetTask(pb.GetTaskRequest(id=kept.id, show_deleted=True)).HasField("delete_time")
    stub.UndeleteTask(pb.UndeleteTaskRequest(id=restored.id))
    server.stop()

    server = run("0")
    stub = server.stub()
    try:
        deadline = time.monotonic() + 10
        while stub.ListTasks(pb.ListTasksRequest(show_deleted=True)).tasks:
            assert time.monotonic() < deadline, "the trash was not purged"
            time.sleep(0.1)
        expect_code(grpc.StatusCode.NOT_FOUND, lambda: stub.UndeleteTask(pb.UndeleteTaskRequest(id=kept.id)))
        expect_code(
            grpc.StatusCode.NOT_FOUND, lambda: stub.GetTask(pb.GetTaskRequest(id=kept.id, show_deleted=True))
        )
        assert stub.GetTask(pb.GetTaskRequest(id=restored.id)).title == "restored"  # live tasks stay
    finally:
        server.stop()
