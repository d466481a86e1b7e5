"""The yardstick: grpcio's asyncio server with TaskService handlers that do nothing.

Every unary method answers a prebuilt message; BulkCreateTasks reads the stream and answers a
response of the same size the real server would send; WatchTasks fans out what CreateTask is sent,
encoded once, to every open watch. Whatever this server does per second is the most any Python
gRPC server can do on this machine, so the real server is reported as a fraction of it.

Run as `python -m taskservice.bench.ceiling PORT`; it prints `ready` once it listens.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.values import new_task_id, now_us, timestamp_from_us

SERVICE = "taskservice.TaskService"


def sample_task() -> pb.Task:
    """A task shaped like the ones the bench creates (same fields, similar size)."""
    now = timestamp_from_us(now_us())
    return pb.Task(
        id=new_task_id(),
        title="benchmark task",
        description="created by taskservice bench",
        status=pb.TASK_STATUS_TODO,
        priority=pb.PRIORITY_HIGH,
        labels=["bench"],
        created_by="bench",
        created_at=now,
        updated_at=now,
        version=1,
    )


class Ceiling:
    def __init__(self) -> None:
        task = sample_task()
        self.task = task.SerializeToString()
        self.page = pb.ListTasksResponse(
            tasks=[task] * 50, next_page_token="x" * 60, total_count=1
        ).SerializeToString()
        self.empty = b""
        self.entry = pb.BulkCreateResponse(tasks=[task]).SerializeToString()
        self.watchers: set[asyncio.Queue[bytes]] = set()
        self.sequence = itertools.count(1)
        self.template = task

    async def unary(self, _: bytes, __: Any) -> bytes:
        return self.task

    async def list(self, _: bytes, __: Any) -> bytes:
        return self.page

    async def delete(self, _: bytes, __: Any) -> bytes:
        return self.empty

    async def create(self, request: bytes, __: Any) -> bytes:
        if self.watchers:
            task = pb.Task()
            task.CopyFrom(self.template)
            task.title = pb.CreateTaskRequest.FromString(request).title  # watchers tell markers apart
            event = pb.TaskEvent(
                event_type=pb.EVENT_TYPE_CREATED,
                task=task,
                timestamp=timestamp_from_us(now_us()),
                sequence=next(self.sequence),
            ).SerializeToString()
            for queue in self.watchers:
                queue.put_nowait(event)
        return self.task

    async def bulk(self, requests: AsyncIterator[bytes], _: Any) -> bytes:
        count = 0
        async for _request in requests:
            count += 1
        return self.entry * count + pb.BulkCreateResponse(success_count=count).SerializeToString()

    async def watch(self, _: bytes, __: Any) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.watchers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self.watchers.discard(queue)


def handlers(ceiling: Ceiling) -> dict[str, grpc.RpcMethodHandler]:
    unary = grpc.unary_unary_rpc_method_handler
    return {
        "CreateTask": unary(ceiling.create),
        "GetTask": unary(ceiling.unary),
        "UpdateTask": unary(ceiling.unary),
        "DeleteTask": unary(ceiling.delete),
        "ListTasks": unary(ceiling.list),
        "WatchTasks": grpc.unary_stream_rpc_method_handler(ceiling.watch),
        "BulkCreateTasks": grpc.stream_unary_rpc_method_handler(ceiling.bulk),
    }


async def serve(port: int) -> None:
    options = [
        ("grpc.max_receive_message_length", 4 * 1024 * 1024),
        ("grpc.server.max_pending_requests", 100_000),  # as the real server: see app.py
        ("grpc.server.max_pending_requests_hard_limit", 100_000),
        ("grpc.server_max_unrequested_time_in_server", 3600),
    ]
    server = grpc.aio.server(options=options)
    table = handlers(Ceiling())
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, table),))
    server.add_registered_method_handlers(SERVICE, table)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
