"""taskctl with tokens (JWT servers) and with TLS/mTLS: what a deployed server asks of a client."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.pki import Pki
from tests.servers import ServerProcess
from tests.test_taskctl import TASKCTL, json_lines, taskctl


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


HOSTILE_TITLES = ["[/bold] hi", "[link=https://evil.example]Quarterly report[/link]", "clear\x1b[2Jscreen"]


def test_other_users_text_is_shown_literally_never_as_markup_or_escape_codes(
    jwt_server: ServerProcess, tag: str
) -> None:
    """Titles, labels, metadata and descriptions assigned to bob by mallory: bob's table, detail
    and watch views show them as text, with no crash, no link and no terminal escape."""
    mallory, bob = jwt_server.token(f"mallory-{tag}"), jwt_server.token(f"bob-{tag}")
    ids = []
    for title in HOSTILE_TITLES:
        made = taskctl(
            jwt_server, "--token", mallory, "-o", "json", "create", title, "-l", tag, "-a", f"bob-{tag}",
            "-d", "line one\n\x1b]8;;https://evil.example\x07x", "-m", "k=[red]v\x1b[31m",
        )  # fmt: skip
        assert made.exit_code == 0, made.stderr
        ids.append(json_lines(made)[0]["id"])
    # FORCE_COLOR makes Rich write for a terminal: styles and links would be emitted as escapes
    for view in (["list", "-l", tag], ["get", ids[1]], ["get", ids[2]], ["watch", "--initial", "-l", tag]):
        if view[0] == "watch":
            shown = watch_output(jwt_server, bob, tag)
        else:
            result = taskctl(jwt_server, "--token", bob, *view, env={"FORCE_COLOR": "1"})
            assert result.exit_code == 0, (view, result.stderr, result.exception)
            shown = result.stdout
        assert "\x1b]8;" not in shown and "\x1b[2J" not in shown and "\x1b[31m" not in shown, (view, shown)
        assert "\x07" not in shown
    table = taskctl(jwt_server, "--token", bob, "list", "-l", tag).stdout
    assert "[/bold] hi" in table and "[link=https://evil.example]Quarterly report[/link]" in table
    assert "clear\\x1b[2Jscreen" in table
    detail = taskctl(jwt_server, "--token", bob, "get", ids[0]).stdout
    assert "line one\n" in detail and "\\x1b]8;;https://evil.example\\x07x" in detail
    assert "[red]v\\x1b[31m" in detail


def watch_output(server: ServerProcess, token: str, tag: str) -> str:
    """What `taskctl watch --initial` prints for the tag's tasks in its first seconds."""
    command = [TASKCTL, "--server", server.grpc_addr, "--token", token, "watch", "--initial", "-l", tag]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "FORCE_COLOR": "1"}
    ) as watcher:
        time.sleep(3)
        watcher.terminate()
        output, _ = watcher.communicate(timeout=10)
    assert output.count("CREATED") == len(HOSTILE_TITLES), output
    return output
