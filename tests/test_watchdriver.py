"""The bench's compiled watch driver: what it counts, times and order-checks, and what it reports
when a server ends its streams."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.bench import watchdriver
from taskservice.domain.values import now_us, timestamp_from_us
from tests.eventually import eventually_async
from tests.servers import ServerProcess, bearer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("watchdriver")
    watchdriver.build(folder)
    return folder


async def _until(
    watches: watchdriver.Watches, done: Callable[[watchdriver.Status], bool], within: float = 20
) -> watchdriver.Status:
    return await eventually_async(watches.status, done, within=within, interval=0.02, what="the watches")


# -- against the real server -------------------------------------------------------------------------


async def _watch_then_stop(
    server: ServerProcess, cache_dir: Path
) -> tuple[watchdriver.Report, watchdriver.Status]:
    token = server.token("alice")
    stub = server.stub()
    label = "driven"
    request = pb.WatchTasksRequest(labels=[label])
    async with watchdriver.watching(
        server.grpc_port, 4, request, token, per_connection=2, cache_dir=cache_dir
    ) as watches:
        await _until(watches, lambda s: s.open == 4)
        # An open stream may not have reached the event window yet, and a watch sees only markers
        # created after that: repeat the marker until every watch has seen one (as the bench does).
        deadline = time.monotonic() + 20
        while (await watches.status()).subscribed < 4:
            assert time.monotonic() < deadline, await watches.status()
            stub.CreateTask(pb.CreateTaskRequest(title="marker", labels=[label]), metadata=bearer(token))
            with contextlib.suppress(AssertionError):
                await _until(watches, lambda s: s.subscribed == 4, within=1)
        await watches.reset()
        for n in range(5):
            stub.CreateTask(pb.CreateTaskRequest(title=f"event {n}", labels=[label]), metadata=bearer(token))
        await _until(watches, lambda s: s.deliveries == 20)
        report = await watches.report(5)
        server.stop()  # SIGTERM: the server ends every watch with UNAVAILABLE
        ended = await _until(watches, lambda s: s.failed == 4)
    return report, ended


def test_the_driver_counts_each_watchers_events_in_order_and_reports_a_server_ending_them(
    tmp_path: Path, cache_dir: Path
) -> None:
    server = ServerProcess.jwt(tmp_path / "server").start()  # with a token: the driver sends it
    try:
        report, ended = asyncio.run(_watch_then_stop(server, cache_dir))
    finally:
        server.kill()
    assert (report.streams, report.subscribed, report.failed) == (4, 4, 0)
    assert (report.deliveries, report.lost, report.extra, report.reordered) == (20, 0, 0, 0)
    assert report.min_per_stream == report.max_per_stream == 5
    assert 0 < report.p50_us <= report.p99_us <= report.max_us
    assert 0 < report.first_delivery <= report.last_delivery <= time.monotonic()
    assert ended.open == 0 and ended.subscribed == 0
    assert "grpc-status 14 (UNAVAILABLE)" in ended.first_failure


async def _watch_beyond_the_limit(server: ServerProcess, cache_dir: Path) -> watchdriver.Status:
    request = pb.WatchTasksRequest(labels=["limited"])
    async with watchdriver.watching(
        server.grpc_port, 3, request, None, per_connection=3, cache_dir=cache_dir
    ) as watches:
        await _until(watches, lambda s: s.open == 2)
        await asyncio.sleep(0.5)
        return await watches.status()


def test_the_driver_keeps_to_the_servers_stream_limit_and_says_what_it_is(
    tmp_path: Path, cache_dir: Path
) -> None:
    server = ServerProcess(tmp_path / "server", "--max-streams-per-connection", "2").start()
    try:
        status = asyncio.run(_watch_beyond_the_limit(server, cache_dir))
    finally:
        server.kill()
    assert (status.streams, status.open, status.failed, status.stream_limit) == (3, 2, 0, 2)


# -- against a server that sends what a parser can trip on -------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _nested(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


# Unknown fields of every wire type, a group with a nested group among them: a parser must skip all.
UNKNOWN = (
    _key(90, 0) + _varint(300)
    + _key(91, 1) + b"\x01" * 8
    + _key(92, 5) + b"\x02" * 4
    + _nested(93, b"abc")
    + _key(94, 3) + _key(1, 0) + _varint(7) + _key(2, 3) + _key(2, 4) + _key(94, 4)
)  # fmt: skip


def _event(title: str, sequence: int, description: str = "") -> bytes:
    task = pb.Task(id="t", title=title, description=description).SerializeToString() + UNKNOWN
    timestamp = timestamp_from_us(now_us() - 1000)
    return (
        _key(1, 0) + _varint(pb.EVENT_TYPE_CREATED)
        + UNKNOWN
        + _nested(2, task)
        + _nested(3, timestamp.SerializeToString() + UNKNOWN)
        + _key(5, 0) + _varint(sequence)
    )  # fmt: skip


async def _tricky_server() -> tuple[grpc.aio.Server, int]:
    """Every watch gets a marker, then five events: one bigger than an HTTP/2 frame (it spans
    several DATA frames), one out of order. The watch then stays open."""

    async def watch(_: bytes, __: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        yield _event("marker", 1)
        for sequence in (2, 3, 5, 4, 6):
            yield _event("event", sequence, description="x" * 40_000 if sequence == 3 else "")
        await asyncio.Event().wait()

    server = grpc.aio.server()
    handlers = {"WatchTasks": grpc.unary_stream_rpc_method_handler(watch)}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("taskservice.TaskService", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _watch_tricky_server(cache_dir: Path) -> tuple[watchdriver.Report, watchdriver.Report]:
    server, port = await _tricky_server()
    try:
        async with watchdriver.watching(
            port, 2, pb.WatchTasksRequest(), None, per_connection=50, cache_dir=cache_dir
        ) as watches:
            await _until(watches, lambda s: s.deliveries == 10)
            before = await watches.report(5)
            await watches.reset()
            return before, await watches.report(5)
    finally:
        await server.stop(None)


def test_the_driver_parses_split_messages_and_unknown_fields_and_counts_what_is_out_of_order(
    cache_dir: Path,
) -> None:
    report, after_reset = asyncio.run(_watch_tricky_server(cache_dir))
    assert (report.subscribed, report.failed, report.malformed) == (2, 0, 0), report.first_failure
    assert (report.deliveries, report.reordered, report.lost) == (10, 2, 0)
    assert report.p50_us >= 1000  # the events were stamped a millisecond before they were sent
    assert (after_reset.deliveries, after_reset.reordered, after_reset.lost, after_reset.p99_us) == (
        0,
        0,
        10,
        0,
    )


# -- building it ---------------------------------------------------------------------------------------


def test_a_missing_compiler_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(
        watchdriver.DriverUnavailable, match=r"C compiler.*apt-get install gcc libnghttp2-dev"
    ):
        watchdriver.build(tmp_path)


def test_missing_nghttp2_headers_are_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "watchdriver.c"
    source.write_text("#include <nghttp2/not-installed.h>\nint main(void) { return 0; }\n")
    monkeypatch.setattr(watchdriver, "SOURCE", source)
    with pytest.raises(watchdriver.DriverUnavailable, match="apt-get install libnghttp2-dev"):
        watchdriver.build(tmp_path / "cache")


def test_the_driver_is_rebuilt_when_its_source_changes(tmp_path: Path, cache_dir: Path) -> None:
    built = watchdriver.build(cache_dir)
    assert watchdriver.build(cache_dir) == built
    changed = tmp_path / "watchdriver.c"
    changed.write_text(watchdriver.SOURCE.read_text() + "\n/* changed */\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(watchdriver, "SOURCE", changed)
        assert watchdriver.build(cache_dir) != built
