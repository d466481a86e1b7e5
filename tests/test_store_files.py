"""The embedded store's files: private modes, and clear one-line refusals for a truncated, damaged or
read-only database instead of a traceback or a silent fresh start."""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from tests.mounts import ext4_volume, fail, remount, repair, tmpfs
from tests.servers import TASKSERVICE, ServerProcess, bearer

PAGE = 4096


def refusal(server: ServerProcess, *extra: str) -> str:
    """Start `server` expecting it to refuse; returns its one `Error:` line (and checks there is one)."""
    done = subprocess.run(
        [*server.command(), *extra], capture_output=True, text=True, timeout=60, cwd=server.data_dir
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    return errors[0]


def fill(server: ServerProcess, count: int, description: str = "") -> None:
    token = server.token("filler", admin=True)
    stub = server.stub()
    stub.BulkCreateTasks(
        iter(pb.CreateTaskRequest(title=f"task {i}", description=description) for i in range(count)),
        metadata=bearer(token),
        timeout=60,
    )


def test_data_dir_and_database_files_are_private(tmp_path: Path) -> None:
    server = ServerProcess.jwt(tmp_path / "data").start()
    try:
        fill(server, 10)
        names = ("tasks.db", "tasks.db-wal", "tasks.db-shm", "jwt-secret")
        modes = {name: stat.S_IMODE(os.stat(server.data_dir / name).st_mode) for name in names}
        assert modes == dict.fromkeys(names, 0o600)
    finally:
        server.stop()
    # ServerProcess makes the folder itself; a folder the server creates is 0700
    nested = ServerProcess.jwt(tmp_path / "parent" / "data")
    subprocess.run(
        [TASKSERVICE, "token", "--user", "u", "--data-dir", str(nested.data_dir)],
        check=True,
        capture_output=True,
    )
    assert stat.S_IMODE(os.stat(nested.data_dir).st_mode) == 0o700


def test_zero_byte_database_next_to_its_secret_refuses_to_start(tmp_path: Path) -> None:
    server = ServerProcess.jwt(tmp_path / "data").start()
    fill(server, 100)
    server.stop()
    database = server.data_dir / "tasks.db"
    database.write_bytes(b"")
    for leftover in ("tasks.db-wal", "tasks.db-shm"):
        (server.data_dir / leftover).unlink(missing_ok=True)

    line = refusal(server)
    assert "tasks.db is empty (0 bytes)" in line and "--allow-empty-store" in line
    assert "restore it from a backup" in line

    server.args.append("--allow-empty-store")
    server.start()
    try:
        listed = server.stub().ListTasks(
            pb.ListTasksRequest(), metadata=bearer(server.token("a", admin=True))
        )
        assert listed.total_count == 0
    finally:
        server.stop()


@pytest.fixture(scope="module")
def healthy_database(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a checkpointed database holding 3,000 tasks of 1 KiB descriptions."""
    server = ServerProcess.jwt(tmp_path_factory.mktemp("healthy")).start()
    fill(server, 3000, "d" * 1024)
    server.stop()
    return (server.data_dir / "tasks.db").read_bytes()


def _damaged_server(tmp_path: Path, content: bytes) -> ServerProcess:
    server = ServerProcess.jwt(tmp_path / "data")
    server.data_dir.mkdir(parents=True)
    (server.data_dir / "jwt-secret").write_text("s" * 64 + "\n")
    (server.data_dir / "tasks.db").write_bytes(content)
    return server


def _random_pages(content: bytes, pages: int) -> bytes:
    """`content` with `pages` consecutive pages of the tasks table's leaves (the rows every list
    reads) overwritten with noise, from the middle of the table."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy.db"
        copy.write_bytes(content)
        with contextlib.closing(sqlite3.connect(copy)) as conn:
            leaves = [
                row[0]
                for row in conn.execute(
                    "SELECT pageno FROM dbstat WHERE name = 'tasks' AND pagetype = 'leaf' ORDER BY pageno"
                )
            ]
    damaged = bytearray(content)
    noise = random.Random(20)
    middle = len(leaves) // 2
    for number in leaves[middle - pages // 2 : middle + pages // 2]:
        start = (number - 1) * PAGE  # dbstat numbers pages from 1
        damaged[start : start + PAGE] = noise.randbytes(PAGE)
    return bytes(damaged)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("garbage header", "is not a SQLite database"),
        ("truncated", "is damaged"),
        ("50 random pages", "is damaged"),
    ],
)
def test_damaged_database_is_refused_in_one_line(
    tmp_path: Path, healthy_database: bytes, damage: str, words: str
) -> None:
    if damage == "garbage header":
        content = random.Random(7).randbytes(PAGE) + healthy_database[PAGE:]
    elif damage == "truncated":
        content = healthy_database[: len(healthy_database) // 2 + 100]
    else:
        content = _random_pages(healthy_database, 50)
    line = refusal(_damaged_server(tmp_path, content))
    assert words in line and "restore it from a backup" in line, line


def test_damage_found_while_serving_makes_the_server_not_ready(
    tmp_path: Path, healthy_database: bytes
) -> None:
    server = _damaged_server(tmp_path, healthy_database).start()
    try:
        admin = bearer(server.token("admin", admin=True))
        stub = server.stub()
        database = server.data_dir / "tasks.db"
        database.write_bytes(_random_pages(database.read_bytes(), 50))
        codes = set()
        token = ""
        for _ in range(10):
            try:
                page = stub.ListTasks(pb.ListTasksRequest(page_size=1000, page_token=token), metadata=admin)
            except grpc.RpcError as error:
                codes.add(error.code())
                break
            token = page.next_page_token
            if not token:
                break
        assert codes == {grpc.StatusCode.INTERNAL}
        assert _ready(server) == 503
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_read_only_data_dir_and_token_give_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "volume") as volume:
        server = ServerProcess.jwt(volume / "data").start()
        fill(server, 10)
        server.stop()
        (volume / "data" / "server.log").unlink()
        remount(volume, "ro")
        server.log_path = tmp_path / "server.log"
        line = refusal(server)
        assert "Read-only file system" in line and str(volume / "data") in line, line

        remount(volume, "rw")
        (volume / "empty").mkdir()
        remount(volume, "ro")
        token = subprocess.run(
            [TASKSERVICE, "token", "--user", "u", "--data-dir", str(volume / "empty")],
            capture_output=True,
            text=True,
        )
        assert token.returncode == 1 and "Traceback" not in token.stderr, token.stderr
        assert (
            token.stderr.startswith("Error: cannot create the JWT secret") and token.stderr.count("\n") == 1
        )
        assert "Read-only file system" in token.stderr


def _ready(server: ServerProcess) -> int:
    try:
        with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_full_disk_makes_writes_unavailable_and_the_server_not_ready_until_space_returns(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "volume", size="3m") as volume:
        ballast = volume / "ballast"
        ballast.write_bytes(b"\0" * 1024 * 1024)
        server = ServerProcess.jwt(tmp_path / "data", store=f"sqlite:///{volume}/tasks.db").start()
        try:
            stub, admin = server.stub(), bearer(server.token("admin", admin=True))
            failure = None
            for i in range(500):
                try:
                    stub.CreateTask(
                        pb.CreateTaskRequest(title=f"big {i}", description="x" * 20_000), metadata=admin
                    )
                except grpc.RpcError as error:
                    failure = error
                    break
            assert failure is not None, "the disk never filled"
            assert failure.code() == grpc.StatusCode.UNAVAILABLE
            assert "disk is full" in (failure.details() or "")
            assert _ready(server) == 503
            ballast.unlink()
            assert _ready(server) == 200
            stub.CreateTask(pb.CreateTaskRequest(title="after", description="x" * 20_000), metadata=admin)
        finally:
            server.stop()


def test_a_volume_turned_read_only_while_serving_stores_nothing_and_loses_nothing(tmp_path: Path) -> None:
    """The kernel remounts the data volume read-only under the running server (as ext4 does on a disk
    error): writes end UNAVAILABLE naming the cause, reads go on, the server is not ready. After the
    operator repairs the volume (e2fsck) and restarts the server, every acknowledged task is there,
    the database passes its integrity check and writes work again."""
    with ext4_volume(tmp_path / "volume") as volume:
        store = f"sqlite:///{volume}/tasks.db"
        server = ServerProcess.jwt(tmp_path / "data", store=store).start()
        try:
            stub, admin = server.stub(), bearer(server.token("admin", admin=True))
            stored = [
                stub.CreateTask(pb.CreateTaskRequest(title=f"before {n}"), metadata=admin) for n in range(20)
            ]
            fail(volume)
            with pytest.raises(grpc.RpcError) as refused:
                stub.CreateTask(pb.CreateTaskRequest(title="while read-only"), metadata=admin, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "could not read or write its file" in (refused.value.details() or "")
            assert stub.GetTask(pb.GetTaskRequest(id=stored[0].id), metadata=admin) == stored[0]
            assert _ready(server) == 503
        finally:
            server.stop()
        repair(volume)
        with contextlib.closing(sqlite3.connect(f"{volume}/tasks.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        server = ServerProcess.jwt(tmp_path / "data", store=store).start()
        try:
            stub, admin = server.stub(), bearer(server.token("admin", admin=True))
            for task in stored:
                assert stub.GetTask(pb.GetTaskRequest(id=task.id), metadata=admin) == task
            stub.CreateTask(pb.CreateTaskRequest(title="after the repair"), metadata=admin)
            assert _ready(server) == 200
        finally:
            server.stop()
