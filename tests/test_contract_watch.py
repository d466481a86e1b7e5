"""WatchTasks: ordering, filters, include_initial without gap or repeat, replay and its limits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.rpc import expect_code, expect_invalid
from tests.servers import ServerProcess
from tests.watching import Watch

OpenWatch = Callable[..., Watch]
"""`watches(stub, **WatchTasksRequest fields)`: a watch the fixture cancels after the test."""


@pytest.fixture
def watches() -> Iterator[OpenWatch]:
    opened: list[Watch] = []

    def open_watch(stub: rpc.TaskServiceStub, **fields: Any) -> Watch:
        watch = Watch(stub, pb.WatchTasksRequest(**fields))
        opened.append(watch)
        return watch

    yield open_watch
    for watch in opened:
        watch.cancel()


def settle(watch: Watch, stub: rpc.TaskServiceStub, tag: str) -> None:
    """Create marker tasks until one arrives, so the watch is certainly live before the test acts
    (a marker committed before the watch started is, rightly, never sent to it)."""
    import queue

    for _ in range(20):
        marker = stub.CreateTask(pb.CreateTaskRequest(title="marker", labels=[tag]))
        try:
            while watch.next(timeout=1.0).task.id != marker.id:
                pass
            return
        except queue.Empty:
            continue
    raise AssertionError("the watch never became live")


def test_live_events_arrive_in_sequence_order_once(
    stub: rpc.TaskServiceStub, tag: str, watches: OpenWatch
) -> None:
    watch = watches(stub, labels=[tag])
    settle(watch, stub, tag)
    task = stub.CreateTask(pb.CreateTaskRequest(title="a", labels=[tag]))
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, status=pb.TASK_STATUS_DONE))
    stub.DeleteTask(pb.DeleteTaskRequest(id=task.id))
    events = watch.take(3)
    assert [e.event_type for e in events] == [
        pb.EVENT_TYPE_CREATED,
        pb.EVENT_TYPE_UPDATED,
        pb.EVENT_TYPE_DELETED,
    ]
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)
    assert len({e.sequence for e in events}) == 3
    assert events[2].task.status == pb.TASK_STATUS_DONE  # DELETED carries the task as it was
    assert events[0].triggered_by == "anonymous"
    assert events[0].timestamp.seconds > 0
    assert watch.quiet()


def test_filters_select_events_and_leaving_a_filter_is_still_delivered(
    stub: rpc.TaskServiceStub, tag: str, watches: OpenWatch
) -> None:
    watch = watches(stub, labels=[tag], statuses=[pb.TASK_STATUS_TODO])
    settle(watch, stub, tag)
    other = stub.CreateTask(pb.CreateTaskRequest(title="other label", labels=[tag + "-x"]))
    task = stub.CreateTask(pb.CreateTaskRequest(title="mine", labels=[tag]))
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, status=pb.TASK_STATUS_DONE))  # leaves the filter
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="renamed while done"))  # outside: not sent
    stub.UpdateTask(pb.UpdateTaskRequest(id=other.id, title="still other"))
    created, left = watch.take(2)
    assert created.task.id == task.id and created.event_type == pb.EVENT_TYPE_CREATED
    assert left.task.id == task.id and left.task.status == pb.TASK_STATUS_DONE
    assert watch.quiet()


def test_task_id_filter(stub: rpc.TaskServiceStub, tag: str, watches: OpenWatch) -> None:
    a = stub.CreateTask(pb.CreateTaskRequest(title="a", labels=[tag]))
    b = stub.CreateTask(pb.CreateTaskRequest(title="b", labels=[tag]))
    watch = watches(stub, task_ids=[b.id], include_initial=True)
    assert watch.next().task.id == b.id  # the initial state: the watch is live from here on
    stub.UpdateTask(pb.UpdateTaskRequest(id=a.id, title="a2"))
    stub.UpdateTask(pb.UpdateTaskRequest(id=b.id, title="b2"))
    assert watch.next().task.title == "b2"
    assert watch.quiet()


def test_include_initial_then_changes_without_gap_or_repeat(
    server: ServerProcess, tag: str, watches: OpenWatch
) -> None:
    stub = server.stub()
    for i in range(20):
        stub.CreateTask(pb.CreateTaskRequest(title=f"before {i}", labels=[tag]))
    stop = threading.Event()
    written: list[str] = []

    def writer() -> None:
        writer_stub = server.stub()
        i = 0
        while not stop.is_set() and i < 200:
            written.append(writer_stub.CreateTask(pb.CreateTaskRequest(title=f"during {i}", labels=[tag])).id)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        watch = watches(stub, labels=[tag], include_initial=True)
        first = watch.next()
    finally:
        stop.set()
        thread.join()
    snapshot_sequence = first.sequence
    seen = {first.task.id}
    events = [first]
    while len(seen) < 20 + len(written):
        event = watch.next()
        assert event.task.id not in seen, "a task was sent twice"
        seen.add(event.task.id)
        events.append(event)
    assert seen == set(written) | {e.task.id for e in events if e.sequence == snapshot_sequence}
    live = [e.sequence for e in events if e.sequence > snapshot_sequence]
    assert live == sorted(live)
    assert watch.quiet()


def test_after_sequence_replays_then_continues_live(
    stub: rpc.TaskServiceStub, tag: str, watches: OpenWatch
) -> None:
    first = stub.CreateTask(pb.CreateTaskRequest(title="one", labels=[tag]))
    probe = watches(stub, labels=[tag], include_initial=True)
    start = probe.next().sequence
    stub.UpdateTask(pb.UpdateTaskRequest(id=first.id, title="two"))
    stub.UpdateTask(pb.UpdateTaskRequest(id=first.id, title="three"))
    replay = watches(stub, labels=[tag], after_sequence=start)
    assert [e.task.title for e in replay.take(2)] == ["two", "three"]
    stub.UpdateTask(pb.UpdateTaskRequest(id=first.id, title="four"))
    assert replay.next().task.title == "four"


def test_after_sequence_out_of_range_and_invalid(stub: rpc.TaskServiceStub) -> None:
    expect_invalid(
        "after_sequence", lambda: next(iter(stub.WatchTasks(pb.WatchTasksRequest(after_sequence=-1))))
    )
    expect_code(
        grpc.StatusCode.OUT_OF_RANGE,
        lambda: next(iter(stub.WatchTasks(pb.WatchTasksRequest(after_sequence=10**15)))),
    )
    expect_invalid(
        "statuses[0]",
        lambda: next(iter(stub.WatchTasks(pb.WatchTasksRequest(statuses=[pb.TaskStatus.ValueType(17)])))),
    )


def test_a_slow_watcher_does_not_slow_writers_or_others(
    server: ServerProcess, tag: str, watches: OpenWatch
) -> None:
    stub = server.stub()
    slow_channel = server.channel()
    from taskservice.api import task_service_pb2_grpc as rpc

    slow = rpc.TaskServiceStub(slow_channel).WatchTasks(pb.WatchTasksRequest(labels=[tag]))  # never read
    fast = watches(stub, labels=[tag])
    settle(fast, stub, tag)
    big = "x" * 15_000
    ids = [
        stub.CreateTask(pb.CreateTaskRequest(title=f"t{i}", description=big, labels=[tag])).id
        for i in range(300)
    ]
    received = [fast.next().task.id for _ in ids]
    assert received == ids
    slow.cancel()
