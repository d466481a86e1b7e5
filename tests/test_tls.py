"""Transport security: with --tls-cert/--tls-key both ports speak TLS only; with --tls-client-ca
they also require a client certificate signed by that CA (mTLS). Certificates are made here."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.servers import ServerProcess, bearer


@dataclass
class Pem:
    cert: bytes
    key: bytes


def _issue(
    name: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[Pem, x509.Name, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        san = x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        )
        builder = builder.add_extension(san, critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    pem = Pem(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    return pem, subject, key


@dataclass
class Pki:
    ca: Pem
    server: Pem
    client: Pem
    stranger: Pem  # a client certificate from a CA the server does not trust
    folder: Path

    def write(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)

    def https_context(self, client: Pem | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca.cert.decode())
        if client is not None:
            context.load_cert_chain(self.write("c.pem", client.cert), self.write("c.key", client.key))
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca, ca_name, ca_key = _issue("test CA", None, ca=True)
    server, _, _ = _issue("localhost", (ca_name, ca_key), server=True)
    client, _, _ = _issue("client", (ca_name, ca_key))
    _, other_name, other_key = _issue("other CA", None, ca=True)
    stranger, _, _ = _issue("stranger", (other_name, other_key))
    return Pki(ca, server, client, stranger, tmp_path_factory.mktemp("pki"))


def _server(pki: Pki, folder: Path, *extra: str, client: Pem | None = None) -> ServerProcess:
    args = [
        "--tls-cert",
        pki.write("server.pem", pki.server.cert),
        "--tls-key",
        pki.write("server.key", pki.server.key),
    ]
    return ServerProcess.jwt(folder, *args, *extra, ssl_context=pki.https_context(client))


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
    proc = _server(pki, tmp_path_factory.mktemp("tls")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    ca = pki.write("client-ca.pem", pki.ca.cert)
    proc = _server(pki, tmp_path_factory.mktemp("mtls"), "--tls-client-ca", ca, client=pki.client).start()
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
