"""Bursts from standard clients at default settings (CONTRACT §5.5): hundreds of concurrent calls on
one fresh grpcio channel all complete, and a connection full of watches still carries new calls.
Once on SQLite and once on two PostgreSQL replicas."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.postgres import Database, require_postgres
from tests.servers import ServerProcess

# A channel of its own: grpcio otherwise shares one connection between channels to one target.
FRESH = [("grpc.use_local_subchannel_pool", 1)]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    """One SQLite server, or two replicas on one PostgreSQL database, at default settings."""
    if request.param == "sqlite":
        procs = [ServerProcess(tmp_path_factory.mktemp("burst"))]
        database = None
    else:
        require_postgres()
        database = Database().create()
        procs = [ServerProcess(tmp_path_factory.mktemp(f"burst{i}"), store=database.url) for i in range(2)]
    try:
        for proc in procs:
            proc.start()
        yield procs
    finally:
        for proc in procs:
            proc.stop()
        if database is not None:
            database.drop()


def _concurrent_creates(channel: grpc.Channel, count: int, tag: str) -> list[pb.Task]:
    """`count` CreateTask calls started at once on `channel`; every one must succeed."""
    stub = rpc.TaskServiceStub(channel)
    futures = [
        stub.CreateTask.future(pb.CreateTaskRequest(title=f"burst {n}", labels=[tag]), timeout=60)
        for n in range(count)
    ]
    return [future.result() for future in futures]


def test_400_concurrent_creates_on_one_fresh_channel_all_succeed(
    servers: list[ServerProcess], tag: str
) -> None:
    with grpc.insecure_channel(servers[0].grpc_addr, options=FRESH) as channel:
        created = _concurrent_creates(channel, 400, tag)
    assert len({task.id for task in created}) == 400


def test_200_concurrent_creates_per_channel_while_a_watch_is_open(
    servers: list[ServerProcess], tag: str
) -> None:
    # include_initial: whatever the watch's start races with, each create reaches it exactly once
    # (in its snapshot or as a live event); initial_metadata() waits until the server has begun it.
    request = pb.WatchTasksRequest(labels=[tag], include_initial=True)
    watchers = [servers[0].stub().WatchTasks(request, timeout=60)]
    watchers[0].initial_metadata()
    results: list[list[pb.Task]] = []
    failures: list[BaseException] = []

    def burst(server: ServerProcess) -> None:
        try:
            with grpc.insecure_channel(server.grpc_addr, options=FRESH) as channel:
                results.append(_concurrent_creates(channel, 200, tag))
        except BaseException as error:  # a thread's failure would otherwise only be a warning
            failures.append(error)

    try:
        threads = [threading.Thread(target=burst, args=(server,)) for server in servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        expected = 200 * len(servers)
        assert sum(len(r) for r in results) == expected
        seen = 0
        for _ in watchers[0]:  # the open watch sees every create, whichever replica took it
            seen += 1
            if seen == expected:
                break
        assert seen == expected
    finally:
        for watcher in watchers:
            watcher.cancel()


def test_a_connection_full_of_watches_still_carries_a_new_call(
    servers: list[ServerProcess], tag: str
) -> None:
    server = servers[0]
    # Two channels with the same target and options share one connection, as in any grpcio client.
    watching = grpc.insecure_channel(server.grpc_addr)
    calling = grpc.insecure_channel(server.grpc_addr)
    stub = rpc.TaskServiceStub(watching)
    watches = [stub.WatchTasks(pb.WatchTasksRequest(labels=[tag]), timeout=60) for _ in range(200)]
    try:
        time.sleep(0.5)  # let every watch open before the call
        task = rpc.TaskServiceStub(calling).CreateTask(
            pb.CreateTaskRequest(title="after", labels=[tag]), timeout=10
        )
        assert next(watches[-1]).task.id == task.id  # and the watches are live
    finally:
        for watch in watches:
            watch.cancel()
        watching.close()
        calling.close()
