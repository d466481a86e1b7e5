"""Webhooks and export with replicas on PostgreSQL: exactly one replica delivers a webhook (or
exports), and when it is killed another picks up from the stored cursor (or the broker's newest)."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.brokers import Redis, require
from tests.postgres import Database, require_postgres
from tests.servers import ServerProcess
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.postgres


@pytest.fixture
def database() -> Iterator[Database]:
    require_postgres()
    db = Database().create()
    yield db
    db.drop()


def _delivering(server: ServerProcess) -> float:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("taskservice_webhooks_delivering "):
                return float(line.split()[1])
    raise AssertionError("no taskservice_webhooks_delivering metric")


def _create(server: ServerProcess, count: int, prefix: str) -> None:
    stub = server.stub()
    for i in range(count):
        stub.CreateTask(pb.CreateTaskRequest(title=f"{prefix} {i}"))


def test_one_replica_delivers_and_another_takes_over(database: Database, tmp_path: Path) -> None:
    receiver = Receiver(delay=0.005)
    replicas = [
        ServerProcess(tmp_path / f"r{i}", "--webhook-allow-private", store=database.url) for i in range(2)
    ]
    try:
        for replica in replicas:
            replica.start()
        hooks = rpc.WebhookServiceStub(replicas[0].channel())
        receiver.secrets.append(hooks.CreateWebhook(pb.CreateWebhookRequest(url=receiver.url)).secret)
        _create(replicas[0], 100, "on r0")
        _create(replicas[1], 100, "on r1")
        receiver.wait_for(200)
        time.sleep(1.0)  # a second deliverer would have sent its copies by now
        counts = Counter(r.id for r in receiver.accepted)
        assert len(counts) == 200 and max(counts.values()) == 1, "an event was delivered twice"
        assert [_delivering(r) for r in replicas].count(1.0) == 1

        holder = next(r for r in replicas if _delivering(r) == 1.0)
        survivor = next(r for r in replicas if r is not holder)
        _create(holder, 100, "before the kill")
        holder.kill()
        _create(survivor, 100, "after the kill")
        ids = receiver.wait_for(400, timeout=60)
        assert ids == sorted(ids) and len(ids) == 400
        assert all(r.verified_by for r in receiver.requests)
        assert _delivering(survivor) == 1.0
    finally:
        for replica in replicas:
            replica.kill()
        receiver.close()


def _exported(server: ServerProcess) -> float:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as answer:
        return sum(
            float(line.split()[-1])
            for line in answer.read().decode().splitlines()
            if line.startswith("taskservice_export_events_total{")
        )


def test_one_replica_exports_and_another_takes_over(database: Database, tmp_path: Path) -> None:
    require("redis-server")
    broker = Redis(tmp_path / "redis").start()
    url = broker.url("replicated")
    replicas = [ServerProcess(tmp_path / f"r{i}", "--export", url, store=database.url) for i in range(2)]
    try:
        for replica in replicas:
            replica.start()
        _create(replicas[0], 100, "on r0")
        _create(replicas[1], 100, "on r1")
        deadline = time.monotonic() + 30
        while len(broker.read("replicated")) < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        exported = [_exported(r) for r in replicas]
        assert sorted(exported) == [0.0, 200.0], exported

        holder = replicas[exported.index(200.0)]
        survivor = next(r for r in replicas if r is not holder)
        holder.kill()
        _create(survivor, 100, "after the kill")
        deadline = time.monotonic() + 30
        while len(broker.read("replicated")) < 300 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [sequence for sequence, _, _ in broker.read("replicated")] == list(range(1, 301))
    finally:
        for replica in replicas:
            replica.kill()
        broker.stop()
