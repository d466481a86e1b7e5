"""Memory stays bounded under hostile use: a client that sends request messages and never finishes
them, with or without a token, cannot make the server hold more than the documented ceiling
(docs/security.md, "Memory bounds")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile_h2 import StalledUploads, rss_bytes
from tests.servers import ServerProcess

MiB = 1024 * 1024
CREATE = "/taskservice.TaskService/CreateTask"
WATCH = "/taskservice.TaskService/WatchTasks"
MESSAGE = 3_900_000  # just under the default --max-message-bytes (4 MiB)
RECEIVING = 16  # the default --max-receiving-per-user
SLACK = 40 * MiB  # allocator and bookkeeping noise around what the attack may legitimately hold


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess.jwt(tmp_path / "server").start()
    yield proc
    proc.stop()


def _attack(server: ServerProcess, path: str, token: str, seconds: float) -> int:
    """4 connections × 25 calls, each sending all but the last byte of a 3.9 MB message and then
    holding the stream open; the server's RSS growth while they are held."""
    assert server.proc is not None
    time.sleep(0.5)
    before = rss_bytes(server.proc.pid)
    uploads = [StalledUploads("127.0.0.1", server.grpc_port, path, 25, MESSAGE, token) for _ in range(4)]
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for upload in uploads:
                upload.pump(0.5)
        return rss_bytes(server.proc.pid) - before
    finally:
        for upload in uploads:
            upload.close()


@pytest.mark.parametrize("path", [CREATE, WATCH])
def test_unfinished_messages_without_a_token_hold_nothing(server: ServerProcess, path: str) -> None:
    growth = _attack(server, path, "", seconds=6)
    assert growth < SLACK, f"RSS grew {growth / MiB:.0f} MiB"


def test_unfinished_messages_of_one_user_hold_at_most_their_receive_slots(server: ServerProcess) -> None:
    growth = _attack(server, CREATE, server.token("attacker"), seconds=10)
    assert growth < RECEIVING * MESSAGE + SLACK, f"RSS grew {growth / MiB:.0f} MiB"


def test_a_user_stalling_their_own_calls_does_not_hold_up_another(server: ServerProcess) -> None:
    from taskservice.api import task_service_pb2 as pb

    from tests.servers import bearer

    attack = StalledUploads("127.0.0.1", server.grpc_port, CREATE, 40, MESSAGE, server.token("attacker"))
    try:
        attack.pump(2)
        task = server.stub().CreateTask(
            pb.CreateTaskRequest(title="unaffected"), metadata=bearer(server.token("bystander")), timeout=5
        )
        assert task.title == "unaffected"
    finally:
        attack.close()
