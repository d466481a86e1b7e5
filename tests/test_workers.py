"""`serve --workers N`: N processes on one port (SO_REUSEPORT) acting as one service."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.eventually import eventually
from tests.postgres import Database, require_postgres
from tests.servers import ServerProcess

pytestmark = pytest.mark.postgres


def workers_of(pid: int) -> list[int]:
    """The worker processes of server `pid` (not multiprocessing's resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        pids = [int(p) for p in children.read().split()]
    workers = []
    for child in pids:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                if b"spawn_main" in cmdline.read():
                    workers.append(child)
        except OSError:
            continue  # exited meanwhile
    return workers


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie holds no sockets any more)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def sockets_on_port(pid: int, port: int) -> dict[str, int]:
    """How many TCP sockets process `pid` holds on local `port`, by state (LISTEN, ESTABLISHED)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    counts = {"LISTEN": 0, "ESTABLISHED": 0}
    for table in ("tcp", "tcp6"):  # gRPC listens on an IPv6 socket that also takes IPv4
        with open(f"/proc/{pid}/net/{table}") as rows:
            for line in rows.readlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                state = {"0A": "LISTEN", "01": "ESTABLISHED"}.get(fields[3])
                if local_port == port and state and fields[9] in inodes:
                    counts[state] += 1
    return counts


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One `serve --workers 2` for the module (starting workers is slow); the test that kills a
    worker runs last."""
    require_postgres()
    db = Database().create()
    server = ServerProcess(tmp_path_factory.mktemp("workers"), "--workers", "2", store=db.url)
    try:
        yield server.start()
    finally:
        server.stop()
        db.drop()


def test_workers_share_the_port_and_see_each_others_changes(workers: ServerProcess, tag: str) -> None:
    assert workers.proc is not None
    pids = workers_of(workers.proc.pid)
    assert len(pids) == 2
    eventually(
        lambda: all(sockets_on_port(p, workers.grpc_port)["LISTEN"] > 0 for p in pids),
        timeout=30,
        what="both workers to listen on the one gRPC port",
    )

    # Separate connections (no shared subchannels); the kernel spreads them over the workers.
    channels = [
        grpc.insecure_channel(workers.grpc_addr, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(12)
    ]
    try:
        stubs = [rpc.TaskServiceStub(channel) for channel in channels]
        marker = stubs[0].CreateTask(pb.CreateTaskRequest(title="marker", labels=[tag]))
        received: list[list[str]] = [[] for _ in stubs]
        ready = threading.Barrier(len(stubs) + 1)

        def watch(index: int) -> None:
            stream = stubs[index].WatchTasks(
                pb.WatchTasksRequest(labels=[tag], include_initial=True), timeout=20
            )
            for event in stream:
                if event.task.id == marker.id:
                    ready.wait()
                    continue
                received[index].append(event.task.title)
                stream.cancel()
                return

        threads = [threading.Thread(target=watch, args=(i,)) for i in range(len(stubs))]
        for thread in threads:
            thread.start()
        ready.wait(timeout=15)
        assert all(sockets_on_port(p, workers.grpc_port)["ESTABLISHED"] > 0 for p in pids)
        stubs[-1].CreateTask(pb.CreateTaskRequest(title="news", labels=[tag]))
        for thread in threads:
            thread.join(20)
        assert received == [["news"]] * len(stubs)
    finally:
        for channel in channels:
            channel.close()


def test_a_worker_that_dies_is_replaced(workers: ServerProcess, tag: str) -> None:
    assert workers.proc is not None
    pid = workers.proc.pid
    first, second = workers_of(pid)
    os.kill(first, signal.SIGKILL)
    eventually(lambda: gone(first), interval=0.02, what=f"worker {first} to exit")
    # Connections queued on its socket in the meantime are reset.
    stub = workers.stub()
    for n in range(5):  # the surviving worker keeps serving meanwhile
        # wait_for_ready: a connection the kernel handed to a dying or still starting worker's
        # socket is reset; clients reconnect (docs/deployment.md says to use it).
        request = pb.CreateTaskRequest(title=f"still here {n}", labels=[tag])
        stub.CreateTask(request, timeout=10, wait_for_ready=True)
    pids = eventually(
        lambda: workers_of(pid),
        lambda pids: len(pids) == 2 and first not in pids,
        timeout=15,
        interval=0.2,
        what="a replacement worker",
    )
    assert second in pids
    assert workers.stop() == 0  # SIGTERM: the supervisor drains every worker and exits cleanly


def test_more_than_one_worker_needs_postgresql(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "sqlite", "--workers", "2")
    with pytest.raises(RuntimeError, match="needs the PostgreSQL store"):
        server.start(timeout=10)
