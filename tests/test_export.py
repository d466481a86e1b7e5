"""--export: every committed event reaches NATS JetStream and Redis Streams, in order, none missing,
across a restart of the server and of the broker."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskservice.api import task_service_pb2 as pb
from tests.brokers import BrokerProcess, Nats, Redis, require
from tests.servers import ServerProcess


@pytest.fixture(params=["nats", "redis"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    require("nats-server" if request.param == "nats" else "redis-server")
    proc: BrokerProcess = (Nats if request.param == "nats" else Redis)(tmp_path / request.param)
    proc.start()
    yield proc
    proc.stop()


def _bulk(server: ServerProcess, count: int, prefix: str) -> None:
    response = server.stub().BulkCreateTasks(
        iter(pb.CreateTaskRequest(title=f"{prefix} {i}") for i in range(count)), timeout=120
    )
    assert response.success_count == count


def _wait(
    read: Callable[[], list[tuple[int, str, dict[str, object]]]], count: int, timeout: float = 60.0
) -> list[tuple[int, str, dict[str, object]]]:
    deadline = time.monotonic() + timeout
    found: list[tuple[int, str, dict[str, object]]] = []
    while time.monotonic() < deadline:
        found = read()
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"the broker holds {len(found)} of {count} events after {timeout}s")


def _check(found: list[tuple[int, str, dict[str, object]]], count: int) -> None:
    assert [sequence for sequence, _, _ in found] == list(range(1, count + 1))
    for sequence, event_type, event in found:
        assert event["sequence"] == str(sequence) and event["eventType"] == event_type == "EVENT_TYPE_CREATED"


def test_ten_thousand_events_in_order_across_a_server_restart(broker: BrokerProcess, tmp_path: Path) -> None:
    name = "tasks.events" if isinstance(broker, Nats) else "taskservice:events"
    server = ServerProcess(tmp_path / "server", "--export", broker.url(name))
    read = lambda: broker.read(name)  # noqa: E731
    try:
        server.start()
        _bulk(server, 5_000, "before")
        server.stop()  # most likely in the middle of exporting
        server.start()
        _bulk(server, 5_000, "after")
        _check(_wait(read, 10_000, timeout=90), 10_000)
    finally:
        server.kill()


def test_a_broker_restart_is_survived(broker: BrokerProcess, tmp_path: Path) -> None:
    name = "tasks.restart" if isinstance(broker, Nats) else "taskservice:restart"
    server = ServerProcess(tmp_path / "server", "--export", broker.url(name))
    read = lambda: broker.read(name)  # noqa: E731
    try:
        server.start()
        _bulk(server, 300, "first")
        _wait(read, 300)
        broker.stop()
        _bulk(server, 300, "while the broker is down")
        broker.start()
        _bulk(server, 300, "after")
        _check(_wait(read, 900), 900)
        time.sleep(0.5)
        with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as answer:
            exposition = answer.read().decode()
        target = broker.url(name)
        assert f'taskservice_export_lag_events{{target="{target}"}} 0.0' in exposition
        assert f'taskservice_export_events_total{{target="{target}"}}' in exposition
    finally:
        server.kill()
