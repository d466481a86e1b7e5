"""A client generated from the ORIGINAL task_service.proto, run in its own interpreter.

Usage: python legacy_client.py GENERATED_DIR ADDRESS — runs the create/get/update/list/watch/bulk/
delete cycle an existing client performs and exits non-zero on the first failure.
"""

from __future__ import annotations

import sys
import threading

sys.path.insert(0, sys.argv[1])

import grpc

# The legacy tree's generated modules, at its package top level (sys.path above), not this checkout's.
from taskservice import task_service_pb2 as pb  # type: ignore[attr-defined]
from taskservice import task_service_pb2_grpc as rpc  # type: ignore[attr-defined]


def main(address: str) -> None:
    stub = rpc.TaskServiceStub(grpc.insecure_channel(address))
    events: list[pb.TaskEvent] = []
    watch = stub.WatchTasks(pb.WatchTasksRequest(labels=["legacy"]))
    ready = threading.Event()

    def pump() -> None:
        ready.set()
        try:
            for event in watch:
                events.append(event)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.CANCELLED, error

    thread = threading.Thread(target=pump)
    thread.start()
    ready.wait()
    probe = stub.CreateTask(pb.CreateTaskRequest(title="probe", labels=["legacy"]))
    while not any(e.task.id == probe.id for e in events):
        threading.Event().wait(0.02)

    task = stub.CreateTask(
        pb.CreateTaskRequest(title="legacy task", labels=["legacy"], priority=pb.PRIORITY_HIGH)
    )
    assert task.id and task.status == pb.TASK_STATUS_TODO and task.priority == pb.PRIORITY_HIGH
    assert stub.GetTask(pb.GetTaskRequest(id=task.id)).title == "legacy task"
    updated = stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, status=pb.TASK_STATUS_DONE, title="done"))
    assert updated.status == pb.TASK_STATUS_DONE and updated.title == "done"
    listed = stub.ListTasks(pb.ListTasksRequest(labels=["legacy"], page_size=1))
    assert listed.total_count == 2 and len(listed.tasks) == 1 and listed.next_page_token
    rest = stub.ListTasks(
        pb.ListTasksRequest(labels=["legacy"], page_size=1, page_token=listed.next_page_token)
    )
    assert {listed.tasks[0].id, rest.tasks[0].id} == {probe.id, task.id}
    bulk = stub.BulkCreateTasks(
        iter([pb.CreateTaskRequest(title="b1", labels=["legacy"]), pb.CreateTaskRequest(title="")])
    )
    assert bulk.success_count == 1 and bulk.errors[0].index == 1
    results = list(stub.ProcessTaskStream(iter([pb.TaskCommand(get=pb.GetTaskRequest(id=task.id))])))
    assert results[0].success and results[0].task.id == task.id
    stub.DeleteTask(pb.DeleteTaskRequest(id=task.id))
    try:
        stub.GetTask(pb.GetTaskRequest(id=task.id))
        raise AssertionError("deleted task still readable")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND

    expected = [pb.EVENT_TYPE_CREATED, pb.EVENT_TYPE_UPDATED, pb.EVENT_TYPE_DELETED]
    while len([e for e in events if e.task.id == task.id]) < 3:
        threading.Event().wait(0.02)
    assert [e.event_type for e in events if e.task.id == task.id] == expected
    watch.cancel()
    thread.join()
    print("legacy client cycle: ok")


if __name__ == "__main__":
    main(sys.argv[2])
