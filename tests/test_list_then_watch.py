"""List, then watch (CONTRACT §5.6): a ListTasks page plus WatchTasks from its `sequence`, with the
same filters, equals the state at any later moment: no event missed, none applied twice, while other
clients write concurrently. On PostgreSQL the shared `server` is two replicas behind round-robin, so
the list and the watch usually run on different processes."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.servers import ServerProcess
from tests.watching import Watch

STATUSES = [pb.TASK_STATUS_TODO, pb.TASK_STATUS_IN_PROGRESS, pb.TASK_STATUS_DONE]


@dataclass(frozen=True)
class Write:
    """One write by the concurrent client: `kind` on the task at `target` (an index into its tasks)."""

    kind: str
    target: int
    status: int


writes = st.builds(
    Write,
    kind=st.sampled_from(["create", "move", "relabel", "delete", "rename"]),
    target=st.integers(0, 30),
    status=st.sampled_from(STATUSES),
)


def _run_writes(
    stub: rpc.TaskServiceStub, tag: str, ids: list[str], plan: list[Write], started: threading.Event
) -> None:
    started.set()
    for write in plan:
        if write.kind == "create" or not ids:
            ids.append(stub.CreateTask(pb.CreateTaskRequest(title="new", labels=[tag])).id)
            continue
        task_id = ids[write.target % len(ids)]
        try:
            if write.kind == "move":
                stub.UpdateTask(pb.UpdateTaskRequest(id=task_id, status=write.status))  # type: ignore[arg-type]
            elif write.kind == "relabel":  # out of the label filter, then maybe back in
                stub.UpdateTask(pb.UpdateTaskRequest(id=task_id, labels=["elsewhere"]))
                if write.status != pb.TASK_STATUS_DONE:
                    stub.UpdateTask(pb.UpdateTaskRequest(id=task_id, labels=[tag]))
            elif write.kind == "rename":
                stub.UpdateTask(pb.UpdateTaskRequest(id=task_id, title=f"renamed {uuid.uuid4().hex[:6]}"))
            else:
                stub.DeleteTask(pb.DeleteTaskRequest(id=task_id))
                ids.remove(task_id)
        except Exception as error:  # a task deleted earlier in the plan: NOT_FOUND is expected
            if "NOT_FOUND" not in str(getattr(error, "code", lambda: "")()):
                raise


def _matches(task: pb.Task, tag: str, statuses: list[int]) -> bool:
    return tag in task.labels and (not statuses or task.status in statuses)


def _apply(view: dict[str, pb.Task], event: pb.TaskEvent, tag: str, statuses: list[int]) -> None:
    """Apply one event as a board does, failing on anything a repeat would look like."""
    task = event.task
    current = view.get(task.id)
    if event.event_type == pb.EVENT_TYPE_CREATED:
        assert current is None, f"CREATED again for {task.id} at sequence {event.sequence}"
    elif current is not None:
        assert task.version >= current.version, f"an older version of {task.id} arrived after a newer one"
    if event.event_type == pb.EVENT_TYPE_UPDATED and current is not None:
        assert task.version > current.version, f"version {task.version} of {task.id} arrived twice"
    if event.event_type != pb.EVENT_TYPE_DELETED and _matches(task, tag, statuses):
        view[task.id] = task
    else:
        view.pop(task.id, None)


def _everything(stub: rpc.TaskServiceStub, tag: str, statuses: list[int]) -> dict[str, pb.Task]:
    page = stub.ListTasks(pb.ListTasksRequest(labels=[tag], statuses=statuses, page_size=1000))  # type: ignore[arg-type]
    assert not page.next_page_token
    return {task.id: task for task in page.tasks}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    initial=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=12),  # sequence 0 means "now"
    plan=st.lists(writes, min_size=1, max_size=30),
    statuses=st.sampled_from([[], [pb.TASK_STATUS_TODO], [pb.TASK_STATUS_IN_PROGRESS, pb.TASK_STATUS_DONE]]),
)
def test_a_page_plus_the_watch_from_its_sequence_is_the_current_state(
    server: ServerProcess, initial: list[int], plan: list[Write], statuses: list[int]
) -> None:
    stub = server.stub()
    tag = "lw-" + uuid.uuid4().hex[:12]
    ids = [stub.CreateTask(pb.CreateTaskRequest(title=f"t{i}", labels=[tag])).id for i in range(len(initial))]
    for task_id, status in zip(ids, initial, strict=True):
        if status != pb.TASK_STATUS_TODO:
            stub.UpdateTask(pb.UpdateTaskRequest(id=task_id, status=status))  # type: ignore[arg-type]

    started = threading.Event()
    writer = threading.Thread(target=_run_writes, args=(server.stub(), tag, ids, plan, started))
    writer.start()
    started.wait()
    page = stub.ListTasks(pb.ListTasksRequest(labels=[tag], statuses=statuses, page_size=1000))  # type: ignore[arg-type]
    assert page.total_count == len(page.tasks)
    view = {task.id: task for task in page.tasks}
    watch = Watch(
        stub,
        pb.WatchTasksRequest(labels=[tag], statuses=statuses, after_sequence=page.sequence),  # type: ignore[arg-type]
    )
    try:
        writer.join(timeout=60)
        assert not writer.is_alive()
        # A last write the watch must deliver: once it arrives, everything before it has too.
        marker = stub.CreateTask(pb.CreateTaskRequest(title="marker", labels=[tag]))
        if statuses and marker.status not in statuses:
            marker = stub.UpdateTask(pb.UpdateTaskRequest(id=marker.id, status=statuses[0]))  # type: ignore[arg-type]
        last = page.sequence
        while True:
            event = watch.next(timeout=10)
            assert event.sequence > last, f"sequence {event.sequence} after {last}: repeated or out of order"
            last = event.sequence
            _apply(view, event, tag, statuses)
            if event.task.id == marker.id and event.task.version == marker.version:
                break
        assert view == _everything(stub, tag, statuses)
    finally:
        watch.cancel()
