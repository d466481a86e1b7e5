"""taskservice.client against live servers: results, errors, paging, retries and watch resume."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.client import AsyncTaskClient, Retry, TaskClient, TaskServiceError, create_request
from tests.servers import ServerProcess, free_port


def test_invalid_argument_carries_the_field_violations(server: ServerProcess) -> None:
    with TaskClient(server.grpc_addr) as client, pytest.raises(TaskServiceError) as raised:
        client.create(" ", labels=["x" * 65])
    error = raised.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {field for field, _ in error.violations} == {"title", "labels[0]"}
    assert str(error).startswith("INVALID_ARGUMENT: invalid request: ")


def test_iter_tasks_follows_page_tokens_and_stops_at_the_limit(server: ServerProcess, tag: str) -> None:
    with TaskClient(server.grpc_addr) as client:
        made = [client.create(f"page {i}", labels=[tag]).id for i in range(5)]
        assert [t.id for t in client.iter_tasks(labels=[tag], page_size=2)] == made
        assert [t.id for t in client.iter_tasks(labels=[tag], page_size=2, limit=3)] == made[:3]
        newest = client.list(labels=[tag], order_by="created_at", descending=True, page_size=1)
        assert newest.tasks[0].id == made[-1] and newest.total_count == 5 and newest.next_page_token


def test_create_is_idempotent_per_request_id(server: ServerProcess, tag: str) -> None:
    with TaskClient(server.grpc_addr) as client:
        first = client.create("once", labels=[tag], request_id=f"r-{tag}")
        assert client.create("once", labels=[tag], request_id=f"r-{tag}").id == first.id
        assert client.create("once", labels=[tag]).id != first.id  # a fresh request_id each call


def test_idempotent_calls_are_retried_until_the_server_is_up(fresh_server: ServerProcess) -> None:
    retry = Retry(attempts=1000, initial=0.05, maximum=0.5)
    with TaskClient(fresh_server.grpc_addr, timeout=60, retry=retry) as client, ThreadPoolExecutor(3) as pool:
        # all three are sent before the server listens
        listed = pool.submit(client.list)
        created = pool.submit(client.create, "after the outage", request_id="one")
        bulk = [create_request(f"bulk {i}", request_id=f"bulk-{i}") for i in range(3)]
        bulk_created = pool.submit(client.bulk_create, bulk)
        fresh_server.start()
        listed.result()  # raises unless the list was retried until the server answered
        assert created.result().version == 1
        assert bulk_created.result().success_count == 3
        assert client.list().total_count == 4


def test_bulk_create_without_request_ids_is_not_retried() -> None:
    with TaskClient(f"127.0.0.1:{free_port()}", retry=Retry(attempts=10, initial=2.0)) as client:
        started = time.monotonic()
        with pytest.raises(TaskServiceError):
            client.bulk_create([create_request("no key")])
        assert time.monotonic() - started < 1.0


def test_delete_is_not_retried() -> None:
    retry = Retry(attempts=10, initial=2.0)
    with TaskClient(f"127.0.0.1:{free_port()}", retry=retry) as client:
        started = time.monotonic()
        with pytest.raises(TaskServiceError) as raised:
            client.delete("some-id")
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 1.0  # a retry would have slept at least 1 s


def test_deadline_bounds_the_retries() -> None:
    with TaskClient(f"127.0.0.1:{free_port()}", timeout=0.5, retry=Retry(attempts=1000)) as client:
        started = time.monotonic()
        with pytest.raises(TaskServiceError):
            client.get("some-id")
        assert time.monotonic() - started < 1.5


def test_async_client_covers_every_rpc(server: ServerProcess, tag: str) -> None:
    async def scenario() -> None:
        async with AsyncTaskClient(server.grpc_addr) as client:
            task = await client.create("async", labels=[tag], priority="high", due="2026-06-01")
            assert (await client.get(task.id)) == task
            moved = await client.update(task.id, status="done", expected_version=1)
            assert moved.status == pb.TASK_STATUS_DONE and moved.version == 2
            with pytest.raises(TaskServiceError) as stale:
                await client.update(task.id, title="late", expected_version=1)
            assert stale.value.code == grpc.StatusCode.ABORTED
            bulk = await client.bulk_create(
                [create_request("b1", labels=[tag]), create_request("", labels=[tag])]
            )
            assert bulk.success_count == 1 and [e.index for e in bulk.errors] == [1]
            commands = [pb.TaskCommand(command_id="g", get=pb.GetTaskRequest(id=task.id))]
            results = [r async for r in client.process(commands)]
            assert results[0].command_id == "g" and results[0].task.id == task.id
            await client.delete(task.id)
            assert [t.title async for t in client.iter_tasks(labels=[tag])] == ["b1"]

    asyncio.run(scenario())


def test_async_watch_resumes_by_itself_across_a_restart(fresh_server: ServerProcess, tag: str) -> None:
    server = fresh_server.start()

    async def scenario() -> list[pb.TaskEvent]:
        async with AsyncTaskClient(server.grpc_addr, retry=Retry(initial=0.05, maximum=0.5)) as client:
            first = await client.create("one", labels=[tag])
            retries: list[str] = []
            events = client.watch(
                labels=[tag], include_initial=True, on_retry=lambda e, d: retries.append(e.code.name)
            )
            seen = [await anext(events)]
            await asyncio.to_thread(server.restart)
            await client.update(first.id, status="done")
            await client.create("two", labels=[tag])
            seen += [await anext(events), await anext(events)]
            await events.aclose()
            assert retries and set(retries) == {"UNAVAILABLE"}
            return seen

    seen = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [(e.event_type, e.task.title) for e in seen] == [
        (pb.EVENT_TYPE_CREATED, "one"),
        (pb.EVENT_TYPE_UPDATED, "one"),
        (pb.EVENT_TYPE_CREATED, "two"),
    ]
    assert seen[0].sequence < seen[1].sequence < seen[2].sequence


def test_bulk_create_replayed_with_request_ids_creates_nothing_twice(server: ServerProcess, tag: str) -> None:
    with TaskClient(server.grpc_addr) as client:
        requests = [create_request(f"replay {i}", labels=[tag], request_id=f"{tag}-{i}") for i in range(3)]
        first = client.bulk_create(requests)
        again = client.bulk_create(requests)
        assert [t.id for t in again.tasks] == [t.id for t in first.tasks]
        assert client.list(labels=[tag]).total_count == 3
