"""Streaming scenarios, driven by a Python asyncio gRPC client.

h2load cannot hold a server stream open or send a client stream, and these scenarios are bounded by
the server's per-message work, not by a client's calls per second: a watch delivery or a bulk item
costs the client one small decode against the server's filter check, frame and write. Messages are
pre-encoded and sent through identity serializers so the client does as little as it can. UpdateTask
is here too because each call must carry a different body (an update that changes nothing writes
nothing); its figure is bounded by this client, which the table says.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.model import now_us, us_from_timestamp

SERVICE = "/taskservice.TaskService/"
# Below the server's default per-connection stream limit (100): a client that opens streams before it
# has read the server's SETTINGS can overshoot it and get REFUSED_STREAM.
_STREAMS_PER_CHANNEL = 50


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _channels(port: int, count: int) -> list[grpc.aio.Channel]:
    # A distinct option per channel stops grpcio from sharing one connection between them.
    return [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("bench.channel", i)]) for i in range(count)
    ]


async def _close(channels: Sequence[grpc.aio.Channel]) -> None:
    await asyncio.gather(*(channel.close() for channel in channels))


async def call(port: int, method: str, request: bytes, token: str | None) -> bytes:
    """One unary call with a pre-encoded request; raises grpc.aio.AioRpcError on a non-OK status."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = channel.unary_unary(SERVICE + method)
        answer: bytes = await stub(request, metadata=_metadata(token), timeout=30)
        return answer


@dataclass
class Rate:
    per_second: float
    calls: int
    errors: int


async def updates(port: int, task_ids: Sequence[str], seconds: float, token: str | None) -> Rate:
    """UpdateTask as fast as one asyncio client can, each call changing its task's title."""
    bodies = [
        [pb.UpdateTaskRequest(id=task_id, title=f"title {k}").SerializeToString() for k in (0, 1)]
        for task_id in task_ids
    ]
    channels = _channels(port, 2)
    metadata = _metadata(token)
    done = errors = 0
    deadline = time.monotonic() + seconds

    async def worker(index: int) -> None:
        nonlocal done, errors
        stub = channels[index % len(channels)].unary_unary(SERVICE + "UpdateTask")
        mine = bodies[index]
        for turn in itertools.count():
            if time.monotonic() >= deadline:
                return
            try:
                await stub(mine[turn % 2], metadata=metadata, timeout=30)
                done += 1
            except grpc.aio.AioRpcError:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(len(bodies))))
    elapsed = time.monotonic() - started
    await _close(channels)
    return Rate(done / elapsed, done, errors)


async def bulk(port: int, streams: int, per_stream: int, token: str | None) -> Rate:
    """`streams` concurrent BulkCreateTasks calls of `per_stream` tasks each; rate in tasks/s."""
    request = pb.CreateTaskRequest(title="bulk task", labels=["bench-bulk"], priority=pb.PRIORITY_LOW)
    body = request.SerializeToString()
    channels = _channels(port, streams)

    async def items() -> AsyncIterator[bytes]:
        for _ in range(per_stream):
            yield body

    async def one(channel: grpc.aio.Channel) -> int:
        stub = channel.stream_unary(
            SERVICE + "BulkCreateTasks", response_deserializer=pb.BulkCreateResponse.FromString
        )
        answer: pb.BulkCreateResponse = await stub(items(), metadata=_metadata(token), timeout=300)
        return answer.success_count

    started = time.monotonic()
    created = await asyncio.gather(*(one(c) for c in channels))
    elapsed = time.monotonic() - started
    await _close(channels)
    total = sum(created)
    return Rate(total / elapsed, total, streams * per_stream - total)


@dataclass
class Fanout:
    watchers: int
    events: int
    deliveries: int
    lost: int
    reordered: int
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass
class _Watcher:
    sequences: list[int] = field(default_factory=list)
    latencies_us: list[int] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)


class _Crowd:
    """Many watches of one label, and a writer that creates tasks carrying it."""

    def __init__(self, port: int, watchers: int, token: str | None, label: str) -> None:
        self.metadata = _metadata(token)
        self.label = label
        self.channels = _channels(port, max(1, -(-watchers // _STREAMS_PER_CHANNEL)))
        self.states = [_Watcher() for _ in range(watchers)]
        self.calls: list[grpc.aio.UnaryStreamCall] = []
        self.closing = False
        self.writer = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.create = self.writer.unary_unary(SERVICE + "CreateTask")
        request = pb.WatchTasksRequest(labels=[label]).SerializeToString()
        self.readers = [asyncio.create_task(self._watch(i, request)) for i in range(watchers)]

    async def _watch(self, index: int, request: bytes) -> None:
        state = self.states[index]
        stub = self.channels[index % len(self.channels)].unary_stream(
            SERVICE + "WatchTasks", response_deserializer=pb.TaskEvent.FromString
        )
        call = stub(request, metadata=self.metadata)
        self.calls.append(call)
        try:
            async for event in call:
                if event.task.title == "marker":
                    state.subscribed.set()
                    continue
                state.latencies_us.append(now_us() - us_from_timestamp(event.timestamp))
                state.sequences.append(event.sequence)
        except grpc.aio.AioRpcError as error:
            # CANCELLED is ours only once close() began: the server (or grpc core in it) can cancel a
            # call too, and swallowing that made cancelled watches look like ones that never started.
            if error.code() != grpc.StatusCode.CANCELLED or not self.closing:
                raise

    async def subscribed(self, within: float = 90) -> None:
        """Return once every watch has seen a marker task. A watch sees only markers created after
        it started, so markers repeat, slowly: each one goes to every watch already open."""
        marker = pb.CreateTaskRequest(title="marker", labels=[self.label]).SerializeToString()
        deadline = time.monotonic() + within
        while not all(s.subscribed.is_set() for s in self.states):
            failed = next((r for r in self.readers if r.done() and r.exception()), None)
            if failed is not None:
                raise RuntimeError(f"a watch failed: {failed.exception()!r}")
            if time.monotonic() > deadline:
                waiting = sum(1 for s in self.states if not s.subscribed.is_set())
                raise TimeoutError(
                    f"{waiting} of {len(self.states)} watches did not subscribe within {within:g} s"
                )
            await self.create(marker, metadata=self.metadata, timeout=30)
            await asyncio.sleep(1.0)

    def deliveries(self) -> int:
        return sum(len(s.sequences) for s in self.states)

    async def close(self) -> None:
        self.closing = True
        for call in self.calls:
            call.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await self.writer.close()
        await _close(self.channels)


async def fanout(
    port: int, watchers: int, events_per_s: float, seconds: float, token: str | None, label: str
) -> Fanout:
    """`watchers` watch one label while a writer creates tasks with it at a steady rate. Each
    delivery's latency is its arrival time minus the event's timestamp (set when it is written)."""
    crowd = _Crowd(port, watchers, token, label)
    try:
        await crowd.subscribed()
        body = pb.CreateTaskRequest(title="watched task", labels=[label]).SerializeToString()
        total = int(events_per_s * seconds)
        started = time.monotonic()
        writes = []
        in_flight = asyncio.Semaphore(_STREAMS_PER_CHANNEL)  # stay under the connection's stream limit

        async def write() -> None:
            async with in_flight:
                await crowd.create(body, metadata=crowd.metadata, timeout=30)

        for n in range(total):  # on a schedule, not one after another: a slow write must not slow the rate
            writes.append(asyncio.ensure_future(write()))
            delay = started + (n + 1) / events_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*writes)
        settle = time.monotonic() + 10
        while crowd.deliveries() < total * watchers and time.monotonic() < settle:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
    finally:
        await crowd.close()
    states = crowd.states
    deliveries = crowd.deliveries()
    reordered = sum(sum(1 for a, b in itertools.pairwise(s.sequences) if b <= a) for s in states)
    latencies = sorted(itertools.chain.from_iterable(s.latencies_us for s in states))
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    return Fanout(
        watchers=watchers,
        events=total,
        deliveries=deliveries,
        lost=max(0, total * watchers - deliveries),
        reordered=reordered,
        deliveries_per_s=deliveries / elapsed,
        p50_ms=cuts[49] / 1000,
        p99_ms=cuts[98] / 1000,
    )


async def idle_watchers(port: int, count: int, token: str | None, label: str, rss: Callable[[], int]) -> int:
    """Open `count` watches that stay idle once subscribed; returns the server's RSS (bytes) then."""
    crowd = _Crowd(port, count, token, label)
    try:
        await crowd.subscribed(within=300)
        await asyncio.sleep(1)
        return rss()
    finally:
        await crowd.close()
