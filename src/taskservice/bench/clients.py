"""Python clients for what h2load cannot do alone, and the watch scenarios around the compiled driver.

A unary call and a bulk stream through a real gRPC client check, before h2load's run, that a body
succeeds (h2load does not read trailers). UpdateTask is here because each call must carry a
different body (an update that changes nothing writes nothing); its figure is bounded by this
client, which the table says. Watches are held and read by `watchdriver` (C, libnghttp2): a Python
client reading 1,000 watches measured itself. Python only writes the tasks they watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.bench import watchdriver

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


async def _subscribe(
    watches: watchdriver.Watches, create: grpc.aio.UnaryUnaryMultiCallable, label: str,
    metadata: tuple[tuple[str, str], ...], within: float,
) -> None:  # fmt: skip
    """Return once every watch has seen a marker task. A watch sees only markers created after it
    started, so markers repeat, once a second: each one goes to every watch already open."""
    marker = pb.CreateTaskRequest(title="marker", labels=[label]).SerializeToString()
    deadline = time.monotonic() + within
    next_marker = 0.0
    while True:
        status = _healthy(await watches.status())
        if status.subscribed == status.streams:
            return
        now = time.monotonic()
        if now > deadline:
            limit = (
                f"; the server allows {status.stream_limit} per connection"
                if status.stream_limit >= 0
                else ""
            )
            raise TimeoutError(
                f"{status.streams - status.subscribed} of {status.streams} watches did not subscribe "
                f"within {within:g} s ({status.open} open{limit})"
            )
        if now >= next_marker:
            await create(marker, metadata=metadata, timeout=30)
            next_marker = now + 1.0
        await asyncio.sleep(0.05)


_S = TypeVar("_S", bound=watchdriver.Status)


def _healthy(status: _S) -> _S:
    """The status, unless a watch ended that the bench did not end: that fails the scenario."""
    if status.failed:
        raise RuntimeError(f"a watch failed ({status.failed} of {status.streams}): {status.first_failure}")
    return status


@contextlib.asynccontextmanager
async def _crowd(
    port: int, count: int, token: str | None, label: str, cache_dir: Path, within: float
) -> AsyncIterator[tuple[watchdriver.Watches, grpc.aio.UnaryUnaryMultiCallable]]:
    """`count` watches of `label`, every one subscribed, and CreateTask on the same server."""
    request = pb.WatchTasksRequest(labels=[label])
    async with (
        watchdriver.watching(
            port, count, request, token, per_connection=_STREAMS_PER_CHANNEL, cache_dir=cache_dir
        ) as watches,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as writer,
    ):
        create = writer.unary_unary(SERVICE + "CreateTask")
        await _subscribe(watches, create, label, _metadata(token), within)
        yield watches, create


async def fanout(
    port: int,
    watchers: int,
    events_per_s: float,
    seconds: float,
    token: str | None,
    label: str,
    *,
    cache_dir: Path = watchdriver.CACHE_DIR,
) -> Fanout:
    """`watchers` watch one label while a writer creates tasks with it at a steady rate. Each
    delivery's latency is its arrival time minus the event's timestamp (set when it is written)."""
    metadata = _metadata(token)
    async with _crowd(port, watchers, token, label, cache_dir, within=90) as (watches, create):
        await watches.reset()
        body = pb.CreateTaskRequest(title="watched task", labels=[label]).SerializeToString()
        total = int(events_per_s * seconds)
        started = time.monotonic()
        writes = []
        in_flight = asyncio.Semaphore(_STREAMS_PER_CHANNEL)  # stay under the connection's stream limit

        async def write() -> None:
            async with in_flight:
                await create(body, metadata=metadata, timeout=30)

        for n in range(total):  # on a schedule, not one after another: a slow write must not slow the rate
            writes.append(asyncio.ensure_future(write()))
            delay = started + (n + 1) / events_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*writes)
        settle = time.monotonic() + 10
        expected = total * watchers
        while _healthy(await watches.status()).deliveries < expected and time.monotonic() < settle:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        settled = time.monotonic()
        report = _healthy(await watches.report(total))
    # Honest throughput: from the first write to the last delivery, or to the end of the wait when
    # some never came.
    ended = report.last_delivery if report.deliveries >= expected and report.deliveries else settled
    return Fanout(
        watchers=watchers,
        events=total,
        deliveries=report.deliveries,
        lost=report.lost,
        reordered=report.reordered,
        deliveries_per_s=report.deliveries / (ended - started),
        p50_ms=report.p50_us / 1000,
        p99_ms=report.p99_us / 1000,
    )


async def idle_watchers(
    port: int,
    count: int,
    token: str | None,
    label: str,
    rss: Callable[[], int],
    *,
    cache_dir: Path = watchdriver.CACHE_DIR,
) -> int:
    """Open `count` watches that stay idle once subscribed; returns the server's RSS (bytes) then."""
    async with _crowd(port, count, token, label, cache_dir, within=300) as (watches, _):
        await asyncio.sleep(1)
        _healthy(await watches.status())
        return rss()
