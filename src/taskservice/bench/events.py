"""The events-out scenario: CreateTask at its saturated rate while the server exports every event to
NATS JetStream and Redis (the local brokers, 127.0.0.1:4222 and :6379) and delivers them to a
webhook on a local receiver. Measured: each export's commit-to-acknowledgement p99, and how far
behind the webhook falls (its receive delay p99, and how long it takes to catch up afterwards)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime

import grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.bench import h2load
from taskservice.bench.report import Row, Target
from taskservice.cli.stats import quantile

NATS = "nats://127.0.0.1:4222"
REDIS = "redis://127.0.0.1:6379"
_CATCH_UP_S = 120.0


class Receiver:
    """A minimal keep-alive HTTP/1.1 endpoint on its own thread and event loop: answers 204 at once
    and notes how long after its commit each event arrived (from the body's `timestamp`)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.received = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="bench-receiver", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                committed = datetime.fromisoformat(json.loads(body)["timestamp"]).timestamp()
                self.delays.append(time.time() - committed)
                self.received += 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        async def end_connections() -> None:
            for writer in list(self._writers):
                writer.close()
            await asyncio.sleep(0.05)  # each connection's handler sees its end and returns

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(end_connections(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def flags(tag: str) -> tuple[str, ...]:
    """The server flags of the scenario: both exports (named after `tag`) and local webhooks."""
    return (
        "--export", f"{NATS}/taskservice.bench.{tag}",
        "--export", f"{REDIS}/taskservice:bench:{tag}",
        "--webhook-allow-private",
    )  # fmt: skip


def measure(
    grpc_port: int, http_port: int, tag: str, token: str | None, load: h2load.Load, say: Callable[[str], None]
) -> list[Row]:
    """Run the scenario on a server started with `flags(tag)`; returns its rows."""
    receiver = Receiver()
    metadata = [("authorization", f"Bearer {token}")] if token else []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            rpc.WebhookServiceStub(channel).CreateWebhook(
                pb.CreateWebhookRequest(url=receiver.url, description="bench"), metadata=metadata
            )
        before = _head(http_port)
        body = h2load.grpc_frame(pb.CreateTaskRequest(title="events-out bench", labels=["bench"]))
        outcome = h2load.run(grpc_port, "CreateTask", body, load, token)
        ended = time.monotonic()
        expected = _head(http_port) - before
        while receiver.received < expected or _export_lag(http_port) > 0:
            expected = _head(http_port) - before  # calls still in flight when h2load stopped
            if time.monotonic() - ended > _CATCH_UP_S:
                say(f"events out: not caught up after {_CATCH_UP_S:.0f} s")
                break
            time.sleep(0.05)
        caught_up = time.monotonic() - ended
        delays = _export_delays(http_port)
    finally:
        receiver.close()
        _clean_up(tag)
    rate = outcome.requests_per_s
    rows = [
        Row(
            f"Export p99 commit→ack, {name} (CreateTask saturated)",
            "ms",
            delays.get(name),
            target=Target("value", "<=", 1000),
            note=f"CreateTask {rate:.0f} req/s under h2load 8x16 streams",
        )
        for name in ("nats", "redis")
    ]
    webhook_p99 = (
        statistics.quantiles(receiver.delays, n=100)[98] * 1000 if len(receiver.delays) >= 2 else None
    )
    rows.append(
        Row(
            "Webhook p99 commit→received (CreateTask saturated)",
            "ms",
            webhook_p99,
            target=Target("value", "<=", 1000),
            note=f"{receiver.received} of {expected} events; all received {caught_up:.1f} s after the load ended",
        )
    )
    return rows


def _scrape(http_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def _head(http_port: int) -> int:
    for line in _scrape(http_port).splitlines():
        if line.startswith("taskservice_event_head_sequence "):
            return int(float(line.split()[1]))
    return 0


def _export_lag(http_port: int) -> float:
    lags = [
        float(line.rsplit(" ", 1)[1])
        for line in _scrape(http_port).splitlines()
        if line.startswith("taskservice_export_lag_events{")
    ]
    return max(lags, default=0.0)


def _export_delays(http_port: int) -> dict[str, float]:
    """The p99 of `taskservice_export_delay_seconds` per broker, in ms."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(_scrape(http_port)):
        for sample in family.samples:
            if sample.name == "taskservice_export_delay_seconds_bucket":
                broker = sample.labels["target"].partition(":")[0]
                buckets.setdefault(broker, {})[float(sample.labels["le"])] = sample.value
    found = {broker: quantile(0.99, b) for broker, b in buckets.items()}
    return {broker: value * 1000 for broker, value in found.items() if value is not None}


def _clean_up(tag: str) -> None:
    """Remove the bench's stream and key from the shared brokers."""

    async def run() -> None:
        import nats
        import redis.asyncio as aioredis

        with contextlib.suppress(Exception):
            nc = await nats.connect(NATS, connect_timeout=2)
            js = nc.jetstream()
            with contextlib.suppress(Exception):
                await js.delete_stream(await js.find_stream_name_by_subject(f"taskservice.bench.{tag}"))
            await nc.close()
        with contextlib.suppress(Exception):
            client = aioredis.Redis.from_url(REDIS)
            await client.delete(f"taskservice:bench:{tag}")
            await client.aclose()

    asyncio.run(run())


def new_tag() -> str:
    return uuid.uuid4().hex[:10]
