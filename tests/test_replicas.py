"""Several replicas on one PostgreSQL database behave as one service."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.postgres import Database, query, require_postgres
from tests.servers import ReplicaSet, ServerProcess

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    require_postgres()
    db = Database().create()
    yield db
    db.drop()


@pytest.fixture(scope="module")
def replicas(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Three replicas on one fresh database."""
    procs = [ServerProcess(tmp_path_factory.mktemp(f"replica{i}"), store=database.url) for i in range(3)]
    try:
        for proc in procs:
            proc.start()
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def collect(
    stub: rpc.TaskServiceStub, request: pb.WatchTasksRequest, count: int, timeout: float = 20
) -> list[pb.TaskEvent]:
    """Read `count` events from a watch (fewer if the deadline passes first)."""
    events: list[pb.TaskEvent] = []
    stream = stub.WatchTasks(request, timeout=timeout)
    try:
        for event in stream:
            events.append(event)
            if len(events) >= count:
                break
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    finally:
        stream.cancel()
    return events


def key(event: pb.TaskEvent) -> tuple[int, int, str, int]:
    return (event.sequence, event.event_type, event.task.id, event.task.version)


def test_concurrent_writes_on_three_replicas_reach_every_watcher_in_one_order(
    replicas: list[ServerProcess], tag: str
) -> None:
    stubs = [r.stub() for r in replicas]
    seed = stubs[0].CreateTask(pb.CreateTaskRequest(title="seed", labels=[tag]))
    (first,) = collect(stubs[1], pb.WatchTasksRequest(task_ids=[seed.id], include_initial=True), 1)
    start = first.sequence  # the sequence the seed's creation left the log at
    writers, per_writer = 6, 12  # each writer: create then update, on its own replica
    total = writers * per_writer * 2
    seen: list[list[pb.TaskEvent]] = [[] for _ in stubs]

    def watch(index: int) -> None:
        seen[index] = collect(stubs[index], pb.WatchTasksRequest(labels=[tag], after_sequence=start), total)

    def write(index: int) -> None:
        stub = stubs[index % len(stubs)]
        for n in range(per_writer):
            task = stub.CreateTask(pb.CreateTaskRequest(title=f"w{index}-{n}", labels=[tag]))
            stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title=f"w{index}-{n}!", expected_version=1))

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(len(stubs))]
    threads += [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    orders = [[key(e) for e in events] for events in seen]
    assert len(orders[0]) == total
    assert orders[0] == orders[1] == orders[2]
    sequences = [k[0] for k in orders[0]]
    assert sequences == list(range(start + 1, start + total + 1))  # no gap, no repeat, commit order
    for events in seen:  # a task's update never arrives before its creation
        created = set()
        for event in events:
            if event.event_type == pb.EVENT_TYPE_CREATED:
                created.add(event.task.id)
            else:
                assert event.task.id in created


def test_a_watcher_on_one_replica_sees_a_change_made_on_another(
    replicas: list[ServerProcess], tag: str
) -> None:
    watcher, writer = replicas[0].stub(), replicas[2].stub()
    received: list[pb.TaskEvent] = []
    ready = threading.Event()

    def watch() -> None:
        stream = watcher.WatchTasks(pb.WatchTasksRequest(labels=[tag], include_initial=True), timeout=15)
        for event in stream:
            if event.task.title == "marker":
                ready.set()
            else:
                received.append(event)
                stream.cancel()
                return

    writer.CreateTask(pb.CreateTaskRequest(title="marker", labels=[tag]))
    thread = threading.Thread(target=watch)
    thread.start()
    assert ready.wait(10)
    started = time.monotonic()
    made = writer.CreateTask(pb.CreateTaskRequest(title="from another replica", labels=[tag]))
    thread.join(15)
    assert [e.task.id for e in received] == [made.id]
    assert time.monotonic() - started < 2  # woken by NOTIFY, not by the fallback poll alone


def test_a_watch_resumes_on_a_different_replica_without_gap_or_repeat(
    replicas: list[ServerProcess], tag: str
) -> None:
    first, second, third = (r.stub() for r in replicas)
    seed = first.CreateTask(pb.CreateTaskRequest(title="seed", labels=[tag]))
    (start,) = collect(first, pb.WatchTasksRequest(task_ids=[seed.id], include_initial=True), 1)
    for n in range(6):
        first.CreateTask(pb.CreateTaskRequest(title=f"before {n}", labels=[tag]))
    half = collect(first, pb.WatchTasksRequest(labels=[tag], after_sequence=start.sequence), 3)
    for n in range(3):
        third.CreateTask(pb.CreateTaskRequest(title=f"after {n}", labels=[tag]))
    rest = collect(second, pb.WatchTasksRequest(labels=[tag], after_sequence=half[-1].sequence), 6)
    titles = [e.task.title for e in half + rest]
    assert titles == [f"before {n}" for n in range(6)] + [f"after {n}" for n in range(3)]


def test_page_tokens_and_request_ids_work_on_any_replica(replicas: list[ServerProcess], tag: str) -> None:
    first, second = replicas[0].stub(), replicas[1].stub()
    for n in range(5):
        first.CreateTask(pb.CreateTaskRequest(title=f"t{n}", labels=[tag]))
    page = first.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=3))
    rest = second.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=3, page_token=page.next_page_token))
    assert len(page.tasks) + len(rest.tasks) == 5 and not rest.next_page_token

    request = pb.CreateTaskRequest(title="once", labels=[tag], request_id="r-" + tag)
    results: list[pb.Task] = []
    threads = [
        threading.Thread(target=lambda s=stub: results.append(s.CreateTask(request)))
        for stub in (first, second, first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({task.id for task in results}) == 1
    assert second.ListTasks(pb.ListTasksRequest(labels=[tag])).total_count == 6


@pytest.mark.slow
def test_killing_a_replica_under_load_loses_no_acknowledged_write(tmp_path: Path, tag: str) -> None:
    require_postgres()
    db = Database().create()
    victim = ServerProcess(tmp_path / "victim", store=db.url)
    survivor = ServerProcess(tmp_path / "survivor", store=db.url)
    try:
        victim.start()
        survivor.start()
        acknowledged: list[str] = []
        survivor_errors: list[grpc.StatusCode] = []
        after_kill = threading.Event()
        survivor_ok_after_kill = 0
        stop = threading.Event()

        def write(server: ServerProcess) -> None:
            nonlocal survivor_ok_after_kill
            stub = server.stub()
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    task = stub.CreateTask(pb.CreateTaskRequest(title=f"load {n}", labels=[tag]), timeout=5)
                except grpc.RpcError as error:
                    if server is victim:
                        return  # the victim is gone: its callers see the failure, nothing was promised
                    survivor_errors.append(error.code())
                    continue
                except ValueError:  # "Cannot invoke RPC on closed channel": kill() closed the victim's
                    if server is victim:
                        return
                    raise
                acknowledged.append(task.id)
                if server is survivor and after_kill.is_set():
                    survivor_ok_after_kill += 1

        threads = [threading.Thread(target=write, args=(s,)) for s in (victim, victim, survivor, survivor)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        victim.kill()  # SIGKILL: no shutdown path runs
        after_kill.set()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join()

        stored = {row[0] for row in query(db.url, "SELECT id FROM tasks")}
        assert len(acknowledged) > 20
        assert set(acknowledged) <= stored
        assert survivor_errors == []
        assert survivor_ok_after_kill > 0
        logged = {row[0] for row in query(db.url, "SELECT task_id FROM events WHERE event_type = 1")}
        assert set(acknowledged) <= logged
    finally:
        victim.kill()
        survivor.stop()
        db.drop()


@pytest.mark.slow
def test_a_rolling_restart_keeps_writes_and_watchers_whole(tmp_path: Path, tag: str) -> None:
    """Restart each replica in turn under load: writers retry (same request_id), the watcher whose
    replica goes away gets UNAVAILABLE and resumes on another with after_sequence."""
    require_postgres()
    db = Database().create()
    group = ReplicaSet([ServerProcess(tmp_path / f"r{i}", store=db.url) for i in range(2)])
    try:
        group.start()
        first = group.replicas[0]
        balanced = group.stub()
        seed = balanced.CreateTask(pb.CreateTaskRequest(title="seed", labels=[tag]))
        (start,) = collect(balanced, pb.WatchTasksRequest(task_ids=[seed.id], include_initial=True), 1)
        watched: list[pb.TaskEvent] = []
        resumes = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal resumes
            # Its own channel: ServerProcess.stop() closes the channels it handed out.
            stub, cursor = rpc.TaskServiceStub(grpc.insecure_channel(first.grpc_addr)), start.sequence
            while not done.is_set():
                try:
                    for event in stub.WatchTasks(
                        pb.WatchTasksRequest(labels=[tag], after_sequence=cursor), timeout=60
                    ):
                        watched.append(event)
                        cursor = event.sequence
                        if event.task.title == "last":
                            done.set()
                            return
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                    resumes += 1
                    stub = balanced
                    time.sleep(0.1)

        acknowledged: list[str] = []
        stop = threading.Event()

        def write() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                request = pb.CreateTaskRequest(title=f"w{n}", labels=[tag], request_id=f"{tag}-{n}")
                while True:
                    try:
                        acknowledged.append(balanced.CreateTask(request, timeout=10, wait_for_ready=True).id)
                        break
                    except grpc.RpcError as error:
                        # CANCELLED: grpc core cancels the calls a stopping server had received but
                        # not yet handed to a handler (grpc/grpc#41785); the request_id makes the
                        # retry safe, as for UNAVAILABLE.
                        assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), error
                        time.sleep(0.05)

        failures: list[BaseException] = []

        def failing_the_test(target: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    target()
                except BaseException as error:  # a thread's exception would otherwise only be a warning
                    failures.append(error)
                    done.set()

            return run

        threads = [threading.Thread(target=failing_the_test(f)) for f in (watch, write)]
        for thread in threads:
            thread.start()
        for replica in group.replicas:
            time.sleep(0.5)
            replica.stop()
            replica.start()
        time.sleep(0.5)
        stop.set()
        threads[1].join()
        balanced.CreateTask(pb.CreateTaskRequest(title="last", labels=[tag]), wait_for_ready=True)
        threads[0].join(30)

        assert not failures, failures
        assert done.is_set() and resumes >= 1
        sequences = [e.sequence for e in watched]
        assert sequences == sorted(set(sequences))  # in order, none twice
        created = [e.task.id for e in watched if e.event_type == pb.EVENT_TYPE_CREATED]
        assert sorted(created[:-1]) == sorted(set(acknowledged))  # every write once, no duplicate
    finally:
        group.kill()
        db.drop()
