"""Shared fixtures: every test talks to a real server process on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskservice.api import task_service_pb2_grpc as rpc
from tests.servers import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One durable server shared by the contract tests (each test uses its own labels/titles)."""
    proc = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield proc
    proc.stop()


@pytest.fixture
def stub(server: ServerProcess) -> rpc.TaskServiceStub:
    return server.stub()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own, for tests that restart, kill or fill it."""
    proc = ServerProcess(tmp_path / "fresh")
    yield proc
    proc.kill()


@pytest.fixture
def tag() -> str:
    """A label unique to the test, to find its own tasks on the shared server."""
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server that requires tokens (`jwt_server.token(user)` mints them), shared like `server`."""
    proc = ServerProcess.jwt(tmp_path_factory.mktemp("jwt-server")).start()
    yield proc
    proc.stop()
