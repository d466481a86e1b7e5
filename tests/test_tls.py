"""Transport security: with --tls-cert/--tls-key both ports speak TLS only; with --tls-client-ca
they also require a client certificate signed by that CA (mTLS). Certificates: tests/pki.py."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.pki import Pem, Pki, tls_server_process
from tests.servers import ServerProcess, bearer


def _secure_stub(
    server: ServerProcess, pki: Pki, client: Pem | None = None
) -> tuple[grpc.Channel, rpc.TaskServiceStub]:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    channel = grpc.secure_channel(server.grpc_addr, credentials)
    return channel, rpc.TaskServiceStub(channel)


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = tls_server_process(pki, tmp_path_factory.mktemp("tls")).start()
    yield proc
    proc.stop()


def _works(stub: rpc.TaskServiceStub, server: ServerProcess) -> bool:
    try:
        stub.CreateTask(
            pb.CreateTaskRequest(title="over tls"), metadata=bearer(server.token("tls-user")), timeout=5
        )
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # the handshake failed, no call was made
        return False
    return True


def test_tls_server_answers_over_tls_and_refuses_plaintext(tls_server: ServerProcess, pki: Pki) -> None:
    channel, stub = _secure_stub(tls_server, pki)
    assert _works(stub, tls_server)
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    channel.close()
    assert not _works(tls_server.stub(), tls_server)  # plaintext channel
    with urllib.request.urlopen(f"{tls_server.http_url}/healthz", context=pki.https_context()) as answer:
        assert answer.status == 200
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{tls_server.http_port}/healthz", timeout=5)


def test_mtls_server_requires_a_client_certificate_from_its_ca(mtls_server: ServerProcess, pki: Pki) -> None:
    for client, accepted in ((pki.client, True), (None, False), (pki.stranger, False)):
        channel, stub = _secure_stub(mtls_server, pki, client)
        assert _works(stub, mtls_server) is accepted
        channel.close()
    with urllib.request.urlopen(
        f"{mtls_server.http_url}/healthz", context=pki.https_context(pki.client)
    ) as answer:
        assert answer.status == 200
    for client in (None, pki.stranger):
        with pytest.raises(OSError):
            urllib.request.urlopen(
                f"{mtls_server.http_url}/healthz", context=pki.https_context(client), timeout=5
            )
