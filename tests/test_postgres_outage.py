"""When PostgreSQL goes away, calls fail cleanly with UNAVAILABLE; when it returns, the service
recovers by itself: writes succeed again and open watches continue from the log."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from tests.postgres import Database, admin, require_postgres
from tests.private_postgres import PrivatePostgres
from tests.servers import ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def wait_for(condition: threading.Event, timeout: float, what: str) -> None:
    assert condition.wait(timeout), f"timed out after {timeout}s waiting for {what}"


def test_database_restart_under_load_gives_unavailable_then_recovers(tmp_path: Path, tag: str) -> None:
    database = PrivatePostgres().init()
    database.start()
    replica = ServerProcess(tmp_path / "server", store=database.url)
    try:
        replica.start()
        stub = replica.stub()
        watched: list[pb.TaskEvent] = []
        watching, last_seen = threading.Event(), threading.Event()

        def watch() -> None:
            stream = replica.stub().WatchTasks(
                pb.WatchTasksRequest(labels=[tag], include_initial=True), timeout=60
            )
            for event in stream:
                watched.append(event)
                watching.set()
                if event.task.title == "after the outage":
                    last_seen.set()
                    stream.cancel()
                    return

        stub.CreateTask(pb.CreateTaskRequest(title="before the outage", labels=[tag]))
        watcher = threading.Thread(target=watch)
        watcher.start()
        wait_for(watching, 10, "the watch to start")

        acknowledged: list[str] = []
        codes: list[grpc.StatusCode] = []
        failing, recovered, stop = threading.Event(), threading.Event(), threading.Event()

        def write() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    task = stub.CreateTask(pb.CreateTaskRequest(title=f"load {n}", labels=[tag]), timeout=10)
                except grpc.RpcError as error:
                    codes.append(error.code())
                    failing.set()
                    time.sleep(0.05)
                    continue
                acknowledged.append(task.id)
                codes.append(grpc.StatusCode.OK)
                if failing.is_set():
                    recovered.set()

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)
        database.stop()
        wait_for(failing, 15, "calls to fail while the database is down")
        time.sleep(0.5)
        database.start()
        wait_for(recovered, 30, "writes to succeed again after the database came back")
        stop.set()
        writer.join()
        stub.CreateTask(pb.CreateTaskRequest(title="after the outage", labels=[tag]))
        wait_for(last_seen, 15, "the open watch to continue after the outage")
        watcher.join()

        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
        assert len(acknowledged) > 5
        live = [e for e in watched if e.sequence > watched[0].sequence]  # after the initial snapshot
        sequences = [e.sequence for e in live]
        assert sequences == sorted(set(sequences))
        assert set(acknowledged) <= {e.task.id for e in live}
        stored = stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=1000))
        assert set(acknowledged) <= {t.id for t in stored.tasks}
    finally:
        replica.kill()
        database.destroy()


def test_a_database_refusing_connections_is_unavailable_not_internal(tmp_path: Path, tag: str) -> None:
    """`ALTER DATABASE … ALLOW_CONNECTIONS false` with its sessions ended: every call answers
    UNAVAILABLE (never INTERNAL) for the whole outage, readiness is off, and both recover."""
    require_postgres()
    database = Database().create()
    replica = ServerProcess(tmp_path / "server", store=database.url)
    try:
        replica.start()
        stub = replica.stub()
        task = stub.CreateTask(pb.CreateTaskRequest(title="before", labels=[tag]), timeout=10)
        admin(f'ALTER DATABASE "{database.name}" ALLOW_CONNECTIONS false')
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database.name}'")
        calls: list[Callable[[], object]] = [
            lambda: stub.CreateTask(pb.CreateTaskRequest(title="during", labels=[tag]), timeout=10),
            lambda: stub.GetTask(pb.GetTaskRequest(id=task.id), timeout=10),
            lambda: stub.ListTasks(pb.ListTasksRequest(labels=[tag]), timeout=10),
            lambda: stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="during"), timeout=10),
        ]
        codes: set[grpc.StatusCode] = set()
        for _ in range(3):
            for attempt in calls:
                with pytest.raises(grpc.RpcError) as refused:
                    attempt()
                codes.add(refused.value.code())
            time.sleep(0.5)
        assert codes == {grpc.StatusCode.UNAVAILABLE}
        assert http_status(f"{replica.http_url}/readyz") == 503

        admin(f'ALTER DATABASE "{database.name}" ALLOW_CONNECTIONS true')
        deadline = time.monotonic() + 20
        while True:
            try:
                stub.CreateTask(pb.CreateTaskRequest(title="after", labels=[tag]), timeout=10)
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() < deadline, "no recovery"
                time.sleep(0.3)
        assert http_status(f"{replica.http_url}/readyz") == 200
    finally:
        replica.stop()
        database.drop()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)
