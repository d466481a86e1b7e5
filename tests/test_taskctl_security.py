"""taskctl with tokens (JWT servers) and with TLS/mTLS: what a deployed server asks of a client."""

from __future__ import annotations

from pathlib import Path

from tests.pki import Pki
from tests.servers import ServerProcess
from tests.test_taskctl import json_lines, taskctl


def test_token_identifies_the_caller_and_its_absence_is_unauthenticated(
    jwt_server: ServerProcess, tag: str
) -> None:
    alice, bob = jwt_server.token(f"alice-{tag}"), jwt_server.token(f"bob-{tag}")
    anonymous = taskctl(jwt_server, "list")
    assert anonymous.exit_code == 1 and anonymous.stderr.startswith("taskctl: UNAUTHENTICATED: ")
    assert anonymous.stderr.count("\n") == 1

    created = taskctl(jwt_server, "--token", alice, "-o", "json", "create", "Alice's", "-l", tag)
    (task,) = json_lines(created)
    assert task["createdBy"] == f"alice-{tag}"
    hidden = taskctl(jwt_server, "get", task["id"], env={"TASKCTL_TOKEN": bob})
    assert hidden.exit_code == 1 and hidden.stderr.startswith("taskctl: NOT_FOUND: ")
    mine = taskctl(jwt_server, "-o", "json", "list", "-l", tag, env={"TASKCTL_TOKEN": alice})
    assert [t["id"] for t in json_lines(mine)] == [task["id"]]


def test_mtls_with_ca_file_client_certificate_and_token(
    mtls_server: ServerProcess, pki: Pki, tag: str
) -> None:
    token = mtls_server.token(f"tls-{tag}")
    trust = ["--ca-file", pki.write("ca.pem", pki.ca.cert), "--token", token]
    mine = ["--cert", pki.write("me.pem", pki.client.cert), "--key", pki.write("me.key", pki.client.key)]
    created = taskctl(mtls_server, *trust, *mine, "-o", "json", "create", "Over mTLS", "-l", tag)
    assert created.exit_code == 0, created.stderr
    assert json_lines(created)[0]["createdBy"] == f"tls-{tag}"

    without_certificate = taskctl(mtls_server, *trust, "--timeout", "1", "list")
    assert without_certificate.exit_code == 1
    assert without_certificate.stderr.startswith("taskctl: UNAVAILABLE: ")
    plaintext = taskctl(mtls_server, "--token", token, "--timeout", "1", "list")
    assert plaintext.exit_code == 1 and plaintext.stderr.startswith("taskctl: UNAVAILABLE: ")
    half = taskctl(mtls_server, *trust, "--cert", str(Path(pki.folder) / "me.pem"), "list")
    assert half.exit_code == 2 and "--cert and --key go together" in half.stderr
