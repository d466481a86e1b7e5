"""Certificates for the TLS and mTLS tests, made at test time: a CA, a server certificate, a client
certificate it signed, and one from a CA the server does not trust."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers import ServerProcess


@dataclass
class Pem:
    cert: bytes
    key: bytes


def issue(
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


def new_pki(folder: Path) -> Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate it signed, and one
    signed by another CA."""
    ca, ca_name, ca_key = issue("test CA", None, ca=True)
    server, _, _ = issue("localhost", (ca_name, ca_key), server=True)
    client, _, _ = issue("client", (ca_name, ca_key))
    _, other_name, other_key = issue("other CA", None, ca=True)
    stranger, _, _ = issue("stranger", (other_name, other_key))
    return Pki(ca, server, client, stranger, folder)


def tls_server_process(pki: Pki, folder: Path, *extra: str, client: Pem | None = None) -> ServerProcess:
    args = [
        "--tls-cert",
        pki.write("server.pem", pki.server.cert),
        "--tls-key",
        pki.write("server.key", pki.server.key),
    ]
    return ServerProcess.jwt(folder, *args, *extra, ssl_context=pki.https_context(client))
