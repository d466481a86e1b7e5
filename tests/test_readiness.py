"""Readiness follows the store: moving the database file away makes the server not ready (HTTP and
gRPC health), putting it back makes it ready again."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.eventually import eventually
from tests.prometheus import scrape, value
from tests.servers import ServerProcess

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def readyz(server: ServerProcess) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_readiness_flips_while_the_database_file_is_gone(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "ready", "--health-check-interval", "0.2").start()
    try:
        health = health_pb2_grpc.HealthStub(server.channel())

        def grpc_status(service: str = "") -> int:
            status: int = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            return status

        assert readyz(server) == (200, {"status": "ready"})
        assert grpc_status() == SERVING
        database = server.data_dir / "tasks.db"
        database.rename(database.with_suffix(".moved"))

        eventually(
            grpc_status, lambda status: status == NOT_SERVING, what="the background check to flip health"
        )
        assert grpc_status("taskservice.TaskService") == NOT_SERVING
        assert readyz(server) == (503, {"status": "not ready", "reason": "store unreachable"})
        with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=5) as answer:
            assert answer.status == 200  # alive all the same: restarting would not bring the file back
        metrics = scrape(server)
        assert value(metrics, "taskservice_ready") == 0
        assert (value(metrics, "taskservice_store_operation_failures_total", operation="ping") or 0) >= 1

        database.with_suffix(".moved").rename(database)
        eventually(grpc_status, lambda status: status == SERVING, what="health to recover")
        assert readyz(server) == (200, {"status": "ready"})
        assert value(scrape(server), "taskservice_ready") == 1
        assert '"event": "store.unreachable"' in server.log()
        assert '"event": "store.recovered"' in server.log()
    finally:
        server.stop()
