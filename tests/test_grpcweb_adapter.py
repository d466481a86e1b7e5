"""The gRPC-Web adapter driven through its ASGI interface, for what the wire cannot show."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import MutableMapping
from typing import Any

from taskservice.access.admission import Admission, StreamQuota
from taskservice.access.auth import NoAuth
from taskservice.access.ratelimit import RateLimiter
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.events import EventWindow
from taskservice.domain.paging import PageTokens
from taskservice.domain.service import TaskService
from taskservice.store import open_store
from taskservice.transport.grpcweb import GrpcWebTransport, decode_text
from taskservice.transport.methods import task_service_methods


def test_text_bodies_decode_whole_or_in_padded_chunks() -> None:
    data = b"\x00\x00\x00\x00\x03abc"
    assert decode_text(base64.b64encode(data)) == data
    assert decode_text(base64.b64encode(data[:5]) + b"\n" + base64.b64encode(data[5:])) == data


def test_client_disconnect_ends_the_watch_on_the_server() -> None:
    async def scenario() -> None:
        store = open_store("memory://", ".")
        await store.open()
        window = EventWindow(store)
        await window.start()
        service = TaskService(store, window, PageTokens(b"k" * 32))
        app = GrpcWebTransport(
            task_service_methods(service),
            Admission(NoAuth(), RateLimiter(0), StreamQuota(10, 10)),
            asyncio.Event(),
        )
        request = pb.WatchTasksRequest().SerializeToString()
        gone = asyncio.Event()
        sent: list[MutableMapping[str, Any]] = []
        body_read = False

        async def receive() -> dict[str, Any]:
            nonlocal body_read
            if not body_read:
                body_read = True
                return {"type": "http.request", "body": struct.pack(">BI", 0, len(request)) + request}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/taskservice.TaskService/WatchTasks",
            "headers": [(b"content-type", b"application/grpc-web+proto")],
        }
        call = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(0.2)
        assert not call.done(), "an idle watch stays open"
        assert sent[0]["type"] == "http.response.start"
        gone.set()
        await asyncio.wait_for(call, 2)  # returns: the watch was cancelled, not left following events
        window.close()
        await store.close()

    asyncio.run(scenario())
