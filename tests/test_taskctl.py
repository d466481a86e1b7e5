"""`taskctl` against live servers: every command, both output formats, and the error paths."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskservice.cli.taskctl import cli
from tests.servers import ServerProcess, free_port

TASKCTL = str(Path(sys.executable).parent / "taskctl")
_TASKCTL_ENV = (
    "TASKCTL_SERVER",
    "TASKCTL_TOKEN",
    "TASKCTL_TLS",
    "TASKCTL_CA_FILE",
    "TASKCTL_OUTPUT",
    "TASKCTL_TIMEOUT",
)


def taskctl(server: ServerProcess | str, *args: str, input: str | None = None, **extra: Any) -> Result:
    """Run taskctl in-process (CliRunner) against `server`."""
    addr = server if isinstance(server, str) else server.grpc_addr
    unset: dict[str, str | None] = {name: None for name in _TASKCTL_ENV}  # the developer's own settings
    env = {**unset, **extra.pop("env", {})}
    return CliRunner().invoke(cli, ["--server", addr, *args], input=input, env=env, **extra)


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def create(server: ServerProcess, *args: str) -> dict[str, Any]:
    result = taskctl(server, "-o", "json", "create", *args)
    assert result.exit_code == 0, result.stderr
    (task,) = json_lines(result)
    return task


def test_create_get_update_delete_in_json(server: ServerProcess, tag: str) -> None:
    task = create(
        server,
        "Ship the client",
        "-d",
        "all commands",
        "-p",
        "high",
        "-l",
        tag,
        "-a",
        "ada",
        "--due",
        "2026-12-31",
        "-m",
        "team=cli",
    )
    assert task["status"] == "TASK_STATUS_TODO" and task["priority"] == "PRIORITY_HIGH"
    assert (task["labels"], task["assignedTo"], task["metadata"]) == ([tag], "ada", {"team": "cli"})
    assert task["dueDate"] == "2026-12-31T00:00:00Z" and task["version"] == "1"

    got = json_lines(taskctl(server, "get", task["id"], "-o", "json"))
    assert got == [task]

    updated = json_lines(
        taskctl(server, "-o", "json", "update", task["id"], "-s", "in-progress", "--if-version", "1")
    )
    assert updated[0]["status"] == "TASK_STATUS_IN_PROGRESS" and updated[0]["version"] == "2"

    deleted = taskctl(server, "-o", "json", "delete", task["id"], "--if-version", "2")
    assert deleted.exit_code == 0 and deleted.stdout.strip() == "{}"
    gone = taskctl(server, "get", task["id"])
    assert gone.exit_code == 1
    assert gone.stderr == f"taskctl: NOT_FOUND: task '{task['id']}' not found\n"


def test_table_output_is_readable_and_uncoloured_off_a_terminal(server: ServerProcess, tag: str) -> None:
    shown = taskctl(server, "create", "Table me", "-p", "critical", "-l", tag)
    assert shown.exit_code == 0
    assert "Table me" in shown.stdout and "critical" in shown.stdout and "\x1b[" not in shown.stdout
    listed = taskctl(server, "list", "-l", tag)
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "TITLE", "STATUS", "PRIORITY", "LABELS", "ASSIGNEE", "DUE", "VERSION"]
    assert "Table me" in lines[1] and "todo" in lines[1] and "critical" in lines[1]
    assert lines[-1] == "1 of 1 tasks" and "\x1b[" not in listed.stdout


def test_stale_if_version_is_aborted_and_changes_nothing(server: ServerProcess, tag: str) -> None:
    task = create(server, "Versioned", "-l", tag)
    taskctl(server, "update", task["id"], "--title", "Second title")
    stale = taskctl(server, "update", task["id"], "--title", "Lost update", "--if-version", "1")
    assert stale.exit_code == 1
    assert stale.stderr.startswith("taskctl: ABORTED: ") and "Traceback" not in stale.output
    assert json_lines(taskctl(server, "-o", "json", "get", task["id"]))[0]["title"] == "Second title"
    refused = taskctl(server, "delete", task["id"], "--if-version", "1")
    assert refused.exit_code == 1 and refused.stderr.startswith("taskctl: ABORTED: ")


def test_update_can_clear_labels_and_due_date(server: ServerProcess, tag: str) -> None:
    task = create(server, "Clear me", "-l", tag, "-l", "other", "--due", "2027-01-01T09:30:00Z")
    (kept,) = json_lines(taskctl(server, "-o", "json", "update", task["id"], "-l", tag, "-m", "k=v"))
    assert (
        kept["labels"] == [tag]
        and kept["dueDate"] == "2027-01-01T09:30:00Z"
        and kept["metadata"] == {"k": "v"}
    )
    (cleared,) = json_lines(
        taskctl(server, "-o", "json", "update", task["id"], "--clear-labels", "--due", "")
    )
    assert "labels" not in cleared and "dueDate" not in cleared and cleared["metadata"] == {"k": "v"}


def test_repeated_request_id_returns_the_first_task(server: ServerProcess, tag: str) -> None:
    first = create(server, "Once", "-l", tag, "--request-id", f"req-{tag}")
    again = create(server, "Once", "-l", tag, "--request-id", f"req-{tag}")
    assert again["id"] == first["id"]
    assert len(json_lines(taskctl(server, "-o", "json", "list", "-l", tag))) == 1


def test_list_filters_sorts_and_limits(server: ServerProcess, tag: str) -> None:
    for title, priority in [("low one", "low"), ("crit one", "critical"), ("high one", "high")]:
        create(server, title, "-p", priority, "-l", tag)
    create(server, "done one", "-p", "medium", "-l", tag)
    done_id = json_lines(taskctl(server, "-o", "json", "list", "-l", tag, "--sort", "created_at", "--desc"))[
        0
    ]["id"]
    taskctl(server, "update", done_id, "-s", "done")

    by_priority = json_lines(taskctl(server, "-o", "json", "list", "-l", tag, "--sort", "priority", "--desc"))
    assert [t["title"] for t in by_priority] == ["crit one", "high one", "done one", "low one"]
    limited = taskctl(server, "list", "-l", tag, "--sort", "priority", "--limit", "2")
    assert "low one" in limited.stdout and "crit one" not in limited.stdout
    assert limited.stdout.splitlines()[-1] == "2 of 4 tasks (--all or --limit to see more)"
    todo_high = json_lines(
        taskctl(server, "-o", "json", "list", "-l", tag, "-s", "todo", "-p", "high", "-p", "low")
    )
    assert sorted(t["title"] for t in todo_high) == ["high one", "low one"]
    assert len(json_lines(taskctl(server, "-o", "json", "list", "-l", tag, "--all", "--limit", "1"))) == 4


def test_invalid_input_fails_with_the_code_and_the_field(server: ServerProcess) -> None:
    result = taskctl(server, "create", "   ")
    assert result.exit_code == 1
    assert result.stderr == "taskctl: INVALID_ARGUMENT: invalid request: title: must not be empty\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["create", "x", "--priority", "urgent"],
        ["create", "x", "--due", "next tuesday"],
        ["create", "x", "-m", "novalue"],
        ["update", "some-id"],
        ["list", "--sort", "title"],
    ],
)
def test_bad_flags_are_usage_errors_without_a_call(args: list[str]) -> None:
    result = taskctl("127.0.0.1:1", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_unreachable_server_fails_with_unavailable_within_the_timeout() -> None:
    started = time.monotonic()
    result = taskctl(f"127.0.0.1:{free_port()}", "--timeout", "1.5", "list")
    assert result.exit_code == 1 and result.stderr.startswith("taskctl: UNAVAILABLE: ")
    assert time.monotonic() - started < 4


def test_import_reports_each_bad_row_with_its_line_and_exits_1(
    server: ServerProcess, tag: str, tmp_path: Path
) -> None:
    rows = tmp_path / "tasks.csv"
    rows.write_text(
        "title,priority,labels,status,metadata\n"
        f"Good one,high,{tag};x,done,\n"
        f",low,{tag},,\n"
        f"Bad priority,urgent,{tag},,\n"
        f'"Two words, one cell",,{tag},in-progress,"{{""k"": ""v""}}"\n'
        f"Broken metadata,,{tag},,{{not json\n"
    )
    result = taskctl(server, "import", str(rows))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{rows}:3: INVALID_ARGUMENT: invalid request: title: must not be empty",
        f"{rows}:4: 'urgent' is not a valid priority; use one of low, medium, high, critical",
        f'{rows}:6: metadata: not a JSON object such as {{"team": "web"}}',
        "imported 2 tasks; 3 rows rejected",
    ]
    tasks = {t["title"]: t for t in json_lines(taskctl(server, "-o", "json", "list", "-l", tag))}
    assert set(tasks) == {"Good one", "Two words, one cell"}
    assert tasks["Good one"]["status"] == "TASK_STATUS_DONE" and tasks["Good one"]["labels"] == [tag, "x"]
    assert tasks["Two words, one cell"]["status"] == "TASK_STATUS_IN_PROGRESS"
    assert tasks["Two words, one cell"]["metadata"] == {"k": "v"}


def test_import_reads_json_lines_from_stdin(server: ServerProcess, tag: str) -> None:
    lines = "\n".join(
        [
            json.dumps(
                {"title": "From JSON", "labels": [tag], "priority": "PRIORITY_LOW", "requestId": f"j-{tag}"}
            ),
            "",
            json.dumps({"title": "Wrong field", "labels": [tag], "colour": "red"}),
            "[1, 2]",
        ]
    )
    result = taskctl(server, "-o", "json", "import", "-", input=lines)
    assert result.exit_code == 1, result.stderr
    (created,) = json_lines(result)
    assert created["title"] == "From JSON" and created["priority"] == "PRIORITY_LOW"
    errors = result.stderr.splitlines()
    assert errors[0].startswith("-:3: ") and "colour" in errors[0]
    assert errors[1] == "-:4: not a JSON object"


def _client_fields(task: dict[str, Any]) -> dict[str, Any]:
    """What an import can reproduce: everything except what the server assigns."""
    server_assigned = ("id", "createdBy", "createdAt", "updatedAt", "version")
    return {key: value for key, value in task.items() if key not in server_assigned}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_then_import_into_a_fresh_server_gives_the_same_tasks(
    server: ServerProcess, fresh_server: ServerProcess, tag: str, tmp_path: Path, fmt: str
) -> None:
    create(server, "Plain", "-l", tag)
    create(
        server,
        "Full",
        "-l",
        tag,
        "-l",
        "semi;colon",
        "-p",
        "critical",
        "-a",
        "bob",
        "-d",
        "line one\nline two",
    )
    full = json_lines(taskctl(server, "-o", "json", "list", "-l", tag, "--sort", "created_at", "--desc"))[0]
    taskctl(
        server,
        "update",
        full["id"],
        "-s",
        "cancelled",
        "--due",
        "2030-05-06T07:08:09Z",
        "-m",
        "a=1",
        "-m",
        'b=é,"x"',
    )
    original = json_lines(taskctl(server, "-o", "json", "list", "-l", tag))

    exported = taskctl(server, "export", "-l", tag, "--format", fmt)
    assert exported.exit_code == 0
    if fmt == "csv":
        assert [row["title"] for row in csv.DictReader(io.StringIO(exported.stdout))] == ["Plain", "Full"]
    dump = tmp_path / f"tasks.{fmt}"
    dump.write_text(exported.stdout)

    fresh_server.start()
    imported = taskctl(fresh_server, "import", str(dump))
    assert imported.exit_code == 0, imported.stderr
    copied = json_lines(taskctl(fresh_server, "-o", "json", "list", "--all"))

    def by_title(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # one bulk stream may give two tasks the same created_at, so compare without relying on order
        return sorted((_client_fields(t) for t in tasks), key=lambda t: t["title"])

    assert by_title(copied) == by_title(original)


def test_batch_answers_every_line_in_order(server: ServerProcess, tag: str) -> None:
    existing = create(server, "Existing", "-l", tag)
    commands = [
        {"create": {"title": "Made in batch", "labels": [tag]}, "commandId": "a"},
        "this is not json",
        {"get": {"id": "no-such-task"}, "commandId": "b"},
        {"update": {"id": existing["id"], "status": "TASK_STATUS_DONE"}, "commandId": "c"},
        {"delete": {"id": existing["id"], "expectedVersion": "1"}, "commandId": "d"},
    ]
    stdin = "\n".join(c if isinstance(c, str) else json.dumps(c) for c in commands) + "\n"
    result = taskctl(server, "batch", input=stdin)
    assert result.exit_code == 1
    answers = json_lines(result)
    assert [a.get("commandId") for a in answers] == ["a", None, "b", "c", "d"]
    assert [a.get("success", False) for a in answers] == [True, False, False, True, False]
    assert answers[0]["task"]["title"] == "Made in batch"
    assert answers[1]["code"] == 3 and answers[1]["errorMessage"].startswith("line 2: not a TaskCommand")
    assert answers[2]["code"] == 5 and answers[4]["code"] == 10  # NOT_FOUND; ABORTED (now at version 2)
    assert answers[3]["task"]["status"] == "TASK_STATUS_DONE"


def test_all_good_batch_exits_0(server: ServerProcess, tag: str) -> None:
    result = taskctl(server, "batch", input=json.dumps({"create": {"title": "ok", "labels": [tag]}}) + "\n")
    assert result.exit_code == 0 and json_lines(result)[0]["success"] is True


def test_config_file_supplies_defaults_and_flags_override_it(
    server: ServerProcess, tmp_path: Path, tag: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'server = "{server.grpc_addr}"\noutput = "json"\n\n[list]\nlimit = 1\n')
    env = {"TASKCTL_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    for title in ("c1", "c2"):
        subprocess.run([TASKCTL, "create", title, "-l", tag], env=env, check=True, capture_output=True)
    listed = subprocess.run([TASKCTL, "list", "-l", tag], env=env, capture_output=True, text=True, check=True)
    assert [json.loads(line)["title"] for line in listed.stdout.splitlines()] == ["c1"]
    table = subprocess.run(
        [TASKCTL, "-o", "table", "list", "-l", tag, "--limit", "5"], env=env, capture_output=True, text=True
    )
    assert table.returncode == 0 and "2 of 2 tasks" in table.stdout

    config.write_text('sever = "typo"\n')
    bad = subprocess.run([TASKCTL, "list"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith(
        f"taskctl: config file {config}: unknown setting(s) sever"
    )


def test_completion_prints_a_shell_script() -> None:
    result = CliRunner().invoke(cli, ["completion", "bash"])
    assert result.exit_code == 0 and "_TASKCTL_COMPLETE" in result.stdout


def test_watch_from_a_future_sequence_fails_with_out_of_range(server: ServerProcess) -> None:
    result = taskctl(server, "watch", "--after", str(2**40))
    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith("taskctl: OUT_OF_RANGE: "), result.stderr


def test_tls_against_a_plaintext_server_fails_in_one_line(server: ServerProcess, tmp_path: Path) -> None:
    """--ca-file switches to TLS; the failed handshake is reported once, without gRPC's own logs."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(_self_signed_certificate())
    env = {"PATH": "/usr/bin:/bin", "TASKCTL_CONFIG": "/nonexistent"}
    args = [TASKCTL, "--server", server.grpc_addr, "--ca-file", str(ca), "--timeout", "1", "get", "x"]
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("taskctl: UNAVAILABLE: ")
    assert "handshake" in result.stderr.lower()


def _self_signed_certificate() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def test_import_creates_through_batch_create_tasks(fresh_server: ServerProcess, tmp_path: Path) -> None:
    fresh_server.start()
    rows = tmp_path / "tasks.csv"
    rows.write_text("title\n" + "".join(f"Row {i}\n" for i in range(3)))
    result = taskctl(fresh_server, "import", str(rows))
    assert result.exit_code == 0, result.stderr
    metrics = urllib.request.urlopen(f"{fresh_server.http_url}/metrics", timeout=5).read().decode()
    started = [line for line in metrics.splitlines() if line.startswith("grpc_server_started_total")]
    assert any('grpc_method="BatchCreateTasks"' in line and line.endswith(" 1.0") for line in started), (
        started
    )
    assert not any('grpc_method="BulkCreateTasks"' in line and not line.endswith(" 0.0") for line in started)


def test_list_filter_query_order_by_and_history(server: ServerProcess, tag: str) -> None:
    word = "xq" + tag[-8:]
    first = create(server, f"{word} draft", "-p", "low", "-l", tag)
    create(server, "other", "-p", "high", "-l", tag)
    assert taskctl(server, "update", first["id"], "-s", "done", "--title", f"{word} final").exit_code == 0

    found = json_lines(
        taskctl(
            server,
            "-o",
            "json",
            "list",
            "-l",
            tag,
            "--filter",
            "priority >= HIGH OR status = DONE",
            "--order-by",
            "priority desc, created_at",
        )
    )
    assert [t["title"] for t in found] == ["other", f"{word} final"]
    assert [t["id"] for t in json_lines(taskctl(server, "-o", "json", "list", "-q", word[:-3] + "*"))] == [
        first["id"]
    ]
    bad = taskctl(server, "list", "--filter", "status = PURPLE")
    assert bad.exit_code != 0 and "at column 10" in bad.output

    history = taskctl(server, "history", first["id"])
    lines = history.stdout.splitlines()
    assert history.exit_code == 0 and len(lines) == 2
    assert "CREATED" in lines[0] and "UPDATED" in lines[1] and "title, status" in lines[1]
    events = json_lines(taskctl(server, "-o", "json", "history", first["id"]))
    assert events[1]["changedPaths"] == "title,status"
