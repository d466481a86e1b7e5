"""The bench reports a watch the server ended instead of waiting for it to subscribe.

A server (or grpc core inside it) can end a watch with CANCELLED; the bench's Python watch client
used to take every CANCELLED for its own `close()`, so such a watch looked like one that never
started and the idle watcher scenario timed out with "did not subscribe" instead of naming the
status. The watch driver that replaced it must not repeat that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.bench import clients


async def _cancelling_server() -> tuple[grpc.aio.Server, int]:
    """A gRPC server whose WatchTasks ends every call with CANCELLED and whose CreateTask answers."""

    async def watch(_: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        await context.abort(grpc.StatusCode.CANCELLED, "cancelled by the server")
        yield b""  # pragma: no cover (abort raises)

    async def create(_: bytes, __: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return pb.Task(title="marker").SerializeToString()

    handlers = {
        "WatchTasks": grpc.unary_stream_rpc_method_handler(watch),
        "CreateTask": grpc.unary_unary_rpc_method_handler(create),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("taskservice.TaskService", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _idle_watchers_against_cancelling_server(cache_dir: Path) -> None:
    server, port = await _cancelling_server()
    try:
        await clients.idle_watchers(port, 3, None, "label", lambda: 0, cache_dir=cache_dir)
    finally:
        await server.stop(None)


def test_a_watch_the_server_cancels_fails_the_scenario_instead_of_timing_out(tmp_path: Path) -> None:
    with pytest.raises(
        RuntimeError, match=r"a watch failed.*grpc-status 1 \(CANCELLED\): cancelled by the server"
    ):
        asyncio.run(_idle_watchers_against_cancelling_server(tmp_path))
