"""Shared fixtures: every test talks to a real server process on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskservice.api import task_service_pb2_grpc as rpc
from tests.pki import Pki, new_pki, tls_server_process
from tests.postgres import Database, require_postgres
from tests.servers import ReplicaSet, ServerProcess
from tests.teams import crew, team  # noqa: F401  (fixtures of the project tests)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One service shared by the contract tests (each test uses its own labels/titles), once per
    store: a durable SQLite server, then two replicas on one PostgreSQL database behind client-side
    round-robin, so every contract test also proves that replicas behave as one service."""
    if request.param == "sqlite":
        proc = ServerProcess(tmp_path_factory.mktemp("server")).start()
        yield proc
        proc.stop()
        return
    require_postgres()
    database = Database().create()
    replicas = ReplicaSet(
        [ServerProcess(tmp_path_factory.mktemp(f"replica{i}"), store=database.url) for i in range(2)]
    )
    try:
        yield replicas.start()  # type: ignore[misc]
    finally:
        replicas.stop()
        database.drop()


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


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return new_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A JWT server on TLS that also requires a client certificate signed by `pki.ca`."""
    ca = pki.write("client-ca.pem", pki.ca.cert)
    args = ("--tls-client-ca", ca)
    proc = tls_server_process(pki, tmp_path_factory.mktemp("mtls"), *args, client=pki.client).start()
    yield proc
    proc.stop()
