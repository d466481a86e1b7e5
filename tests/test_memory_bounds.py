"""Memory stays bounded under hostile use: a client that sends request messages and never finishes
them, with or without a token, cannot make the server hold more than the documented ceiling
(docs/security.md, "Memory bounds")."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.hostile_h2 import StalledUploads, rss_bytes
from tests.servers import ServerProcess, bearer

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
    """4 connections x 25 calls, each sending all but the last byte of a 3.9 MB message and then
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
    attack = StalledUploads("127.0.0.1", server.grpc_port, CREATE, 40, MESSAGE, server.token("attacker"))
    try:
        attack.pump(2)
        task = server.stub().CreateTask(
            pb.CreateTaskRequest(title="unaffected"), metadata=bearer(server.token("bystander")), timeout=5
        )
        assert task.title == "unaffected"
    finally:
        attack.close()


def _largest_task(title: str) -> pb.CreateTaskRequest:
    """A task near every size limit: about 160 KB encoded."""
    return pb.CreateTaskRequest(
        title=title[:200],
        description="d" * 20_000,
        labels=[f"l{n:02d}" + "x" * 60 for n in range(50)],
        metadata={f"k{n:03d}" + "k" * 124: "v" * 2048 for n in range(64)},
    )


def test_the_event_window_holds_at_most_its_byte_budget(server: ServerProcess) -> None:
    """500 of the largest tasks (about 80 MB of events), then 300 updates of one of them (each
    event holds the task and its previous version): the window keeps to its 64 MiB, and a watcher
    that resumes from the start still gets every event, the big ones read from the log."""
    assert server.proc is not None
    stub, md = server.stub(), bearer(server.token("writer"))
    first = stub.CreateTask(pb.CreateTaskRequest(title="start"), metadata=md)
    (start,) = _events(stub, md, pb.WatchTasksRequest(task_ids=[first.id], include_initial=True), 1)
    time.sleep(0.5)
    before = rss_bytes(server.proc.pid)
    with ThreadPoolExecutor(8) as pool:
        created = list(
            pool.map(lambda n: stub.CreateTask(_largest_task(f"big {n}"), metadata=md), range(500))
        )
    toggled = created[0]
    for n in range(300):
        status = pb.TASK_STATUS_IN_PROGRESS if n % 2 == 0 else pb.TASK_STATUS_TODO
        toggled = stub.UpdateTask(
            pb.UpdateTaskRequest(id=toggled.id, status=status, expected_version=toggled.version), metadata=md
        )
    growth = rss_bytes(server.proc.pid) - before
    assert growth < 64 * MiB + 2 * SLACK, f"RSS grew {growth / MiB:.0f} MiB"
    window_bytes = _metric(server, "taskservice_event_window_bytes")
    assert 0 < window_bytes <= 64 * MiB

    events = _events(stub, md, pb.WatchTasksRequest(after_sequence=start.sequence), 800)
    assert [e.sequence for e in events] == list(range(start.sequence + 1, start.sequence + 801))
    assert events[-1].task.version == toggled.version and events[-1].task.description == "d" * 20_000


def test_stalled_initial_snapshots_hold_one_part_each(server: ServerProcess) -> None:
    """10 watches with include_initial over 100,000 tasks whose clients never read: each holds one
    part of its snapshot (at most 500 tasks or 256 KiB) and what HTTP/2 flow control lets through,
    not the 100,000 tasks (about 57 MB each when the whole snapshot was read at once). A watcher
    that reads first gets every task once; it also brings the database file into memory (the
    reader maps it), which the stalled watches then share."""
    assert server.proc is not None
    stub, md = server.stub(), bearer(server.token("owner"))
    for chunk in range(10):
        requests = (pb.CreateTaskRequest(title=f"task {chunk}-{n}", labels=["many"]) for n in range(10_000))
        assert len(stub.BulkCreateTasks(requests, metadata=md, timeout=120).tasks) == 10_000
    seen: set[str] = set()
    call = stub.WatchTasks(pb.WatchTasksRequest(include_initial=True), metadata=md, timeout=120)
    for event in call:
        assert event.event_type == pb.EVENT_TYPE_CREATED and event.task.id not in seen
        seen.add(event.task.id)
        if len(seen) == 100_000:
            break
    call.cancel()
    time.sleep(0.5)
    before = rss_bytes(server.proc.pid)
    # Small flow-control windows, as a client that stops reading soon has (no BDP probing).
    stalled = [
        grpc.insecure_channel(server.grpc_addr, options=[("grpc.http2.bdp_probe", 0)]) for _ in range(10)
    ]
    calls = [
        rpc.TaskServiceStub(channel).WatchTasks(pb.WatchTasksRequest(include_initial=True), metadata=md)
        for channel in stalled
    ]
    try:
        time.sleep(5)  # every watch has read and sent what it can
        growth = rss_bytes(server.proc.pid) - before
        assert growth < SLACK + 10 * 2 * MiB, f"RSS grew {growth / MiB:.0f} MiB"
    finally:
        for call in calls:
            call.cancel()
        for channel in stalled:
            channel.close()


def _events(
    stub: rpc.TaskServiceStub, md: list[tuple[str, str]], request: pb.WatchTasksRequest, count: int
) -> list[pb.TaskEvent]:
    received: list[pb.TaskEvent] = []
    call = stub.WatchTasks(request, metadata=md, timeout=60)
    for event in call:
        received.append(event)
        if len(received) == count:
            break
    call.cancel()
    return received


def _metric(server: ServerProcess, name: str) -> float:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def _stalled_http_bodies(server: ServerProcess, token: str, sockets: int = 60) -> list[socket.socket]:
    """`sockets` gRPC-Web POSTs announcing 5,501,000 bytes of body, each sending 5,500,000 of them
    and then holding the connection open."""
    head = (
        "POST /taskservice.TaskService/CreateTask HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        "content-type: application/grpc-web+proto\r\ncontent-length: 5501000\r\n"
        + (f"authorization: Bearer {token}\r\n" if token else "")
        + "\r\n"
    ).encode()
    body = b"\x00" + (5_500_995).to_bytes(4, "big") + b"\x0a" * 5_499_995

    def send(sock: socket.socket) -> None:
        sock.settimeout(5)
        with contextlib.suppress(OSError):  # a server that stops reading: the rest stays unsent
            sock.sendall(head + body)

    opened = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(sockets)]
    with ThreadPoolExecutor(sockets) as pool:
        list(pool.map(send, opened))
    return opened


@pytest.mark.parametrize("with_token", [False, True])
def test_unfinished_http_bodies_stay_within_the_ports_budget(server: ServerProcess, with_token: bool) -> None:
    """Without a token nothing is read; with one, the bodies held at once stay within the port's
    64 MiB budget (and the user's 16 receive slots), plus what the HTTP server reads ahead on each
    connection."""
    assert server.proc is not None
    time.sleep(0.5)
    before = rss_bytes(server.proc.pid)
    opened = _stalled_http_bodies(server, server.token("http-attacker") if with_token else "")
    try:
        time.sleep(1)
        growth = rss_bytes(server.proc.pid) - before
        read_ahead = len(opened) * 4 * 64 * 1024  # what hypercorn reads ahead on each connection
        ceiling = (64 * MiB if with_token else 0) + read_ahead + SLACK
        assert growth < ceiling, f"RSS grew {growth / MiB:.0f} MiB"
        task = server.stub().CreateTask(  # and the server still serves others
            pb.CreateTaskRequest(title="unaffected"), metadata=bearer(server.token("bystander")), timeout=5
        )
        assert task.title == "unaffected"
    finally:
        for sock in opened:
            sock.close()
