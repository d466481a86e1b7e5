"""ListTasks' total_count stays exact while tasks are created, updated and deleted between pages."""

from __future__ import annotations

from typing import Any

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc

TODO, DONE = pb.TASK_STATUS_TODO, pb.TASK_STATUS_DONE


def _total(stub: rpc.TaskServiceStub, tag: str, **filters: Any) -> int:
    page: pb.ListTasksResponse = stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=2, **filters))
    return page.total_count


def _matches(stub: rpc.TaskServiceStub, tag: str, **filters: Any) -> int:
    seen, token = 0, ""
    while True:
        page = stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=1000, page_token=token, **filters))
        seen += len(page.tasks)
        token = page.next_page_token
        if not token:
            return seen


def test_total_count_follows_creates_updates_and_deletes(stub: rpc.TaskServiceStub, tag: str) -> None:
    ids = [stub.CreateTask(pb.CreateTaskRequest(title=f"t{i}", labels=[tag])).id for i in range(5)]
    assert _total(stub, tag) == 5 and _total(stub, tag, statuses=[TODO]) == 5  # counted, then remembered

    ids.append(stub.CreateTask(pb.CreateTaskRequest(title="late", labels=[tag])).id)
    stub.UpdateTask(pb.UpdateTaskRequest(id=ids[0], status=DONE))  # leaves the TODO filter
    stub.UpdateTask(pb.UpdateTaskRequest(id=ids[1], title="renamed"))  # stays in it
    stub.UpdateTask(pb.UpdateTaskRequest(id=ids[2], labels=["elsewhere"]))  # leaves the label filter
    stub.DeleteTask(pb.DeleteTaskRequest(id=ids[3]))

    for filters in ({}, {"statuses": [TODO]}, {"statuses": [DONE]}):
        assert _total(stub, tag, **filters) == _matches(stub, tag, **filters), filters
    assert _total(stub, tag) == 4 and _total(stub, tag, statuses=[TODO]) == 3

    stub.UpdateTask(pb.UpdateTaskRequest(id=ids[2], labels=[tag]))  # comes back
    stub.UpdateTask(pb.UpdateTaskRequest(id=ids[0], status=TODO))
    assert _total(stub, tag) == 5 == _matches(stub, tag)
    assert _total(stub, tag, statuses=[TODO]) == 5


def test_total_count_includes_tasks_created_in_bulk(stub: rpc.TaskServiceStub, tag: str) -> None:
    assert _total(stub, tag) == 0
    answer = stub.BulkCreateTasks(
        iter([pb.CreateTaskRequest(title=f"b{i}", labels=[tag]) for i in range(30)])
    )
    assert answer.success_count == 30
    assert _total(stub, tag) == 30 == _matches(stub, tag)
