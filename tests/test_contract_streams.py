"""BulkCreateTasks (client streaming) and ProcessTaskStream (bidirectional)."""

from __future__ import annotations

import grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.rpc import expect_code
from tests.servers import ServerProcess


def test_bulk_stores_good_items_and_reports_bad_ones_by_index(stub: rpc.TaskServiceStub, tag: str) -> None:
    items = [
        pb.CreateTaskRequest(title="first", labels=[tag]),
        pb.CreateTaskRequest(title="", labels=[tag]),
        pb.CreateTaskRequest(title="third", labels=[tag], priority=pb.PRIORITY_HIGH),
        pb.CreateTaskRequest(title="bad priority", labels=[tag], priority=pb.Priority.ValueType(99)),
        pb.CreateTaskRequest(title="fifth", labels=[tag]),
    ]
    response = stub.BulkCreateTasks(iter(items))
    assert response.success_count == 3
    assert [t.title for t in response.tasks] == ["first", "third", "fifth"]
    assert [(e.index, e.code) for e in response.errors] == [
        (1, grpc.StatusCode.INVALID_ARGUMENT.value[0])
    ] * 1 + [(3, grpc.StatusCode.INVALID_ARGUMENT.value[0])]
    assert "title" in response.errors[0].error_message
    assert stub.ListTasks(pb.ListTasksRequest(labels=[tag])).total_count == 3


def test_bulk_of_many_items_commits_them_all(stub: rpc.TaskServiceStub, tag: str) -> None:
    items = (pb.CreateTaskRequest(title=f"bulk {i}", labels=[tag]) for i in range(2500))
    response = stub.BulkCreateTasks(items)
    assert response.success_count == 2500 and not response.errors
    assert stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=1)).total_count == 2500


def test_bulk_keeps_stream_indexes_and_order_across_chunks(stub: rpc.TaskServiceStub, tag: str) -> None:
    """The server validates a chunk of items at a time (500 today): bad items on either side of a
    chunk's edge are reported at their own stream index, and the good ones answered in stream order."""
    bad = {0, 1, 499, 500, 501, 999, 1000, 1200}
    items = [pb.CreateTaskRequest(title="" if i in bad else f"item {i}", labels=[tag]) for i in range(1201)]
    response = stub.BulkCreateTasks(iter(items))
    assert [e.index for e in response.errors] == sorted(bad)
    assert [t.title for t in response.tasks] == [f"item {i}" for i in range(1201) if i not in bad]
    assert response.success_count == 1201 - len(bad)
    assert stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=1)).total_count == 1201 - len(bad)


def test_bulk_request_ids_are_idempotent_within_and_across_streams(
    stub: rpc.TaskServiceStub, tag: str
) -> None:
    items = [pb.CreateTaskRequest(title="x", labels=[tag], request_id=f"{tag}-a")] * 2
    response = stub.BulkCreateTasks(iter(items))
    assert response.success_count == 2
    assert response.tasks[0].id == response.tasks[1].id
    again = stub.BulkCreateTasks(iter(items[:1]))
    assert again.tasks[0].id == response.tasks[0].id
    assert stub.ListTasks(pb.ListTasksRequest(labels=[tag])).total_count == 1


def test_empty_bulk_stream_answers_zero(stub: rpc.TaskServiceStub) -> None:
    response = stub.BulkCreateTasks(iter([]))
    assert response.success_count == 0 and not response.tasks and not response.errors


def test_process_stream_answers_in_order_and_survives_a_failing_command(
    stub: rpc.TaskServiceStub, tag: str
) -> None:
    existing = stub.CreateTask(pb.CreateTaskRequest(title="existing", labels=[tag]))
    commands = [
        pb.TaskCommand(command_id="c1", create=pb.CreateTaskRequest(title="made in stream", labels=[tag])),
        pb.TaskCommand(command_id="c2", get=pb.GetTaskRequest(id="does-not-exist")),
        pb.TaskCommand(command_id="c3", update=pb.UpdateTaskRequest(id=existing.id, title="renamed")),
        pb.TaskCommand(command_id="c4", create=pb.CreateTaskRequest(title="")),
        pb.TaskCommand(command_id="c5"),
        pb.TaskCommand(command_id="c6", delete=pb.DeleteTaskRequest(id=existing.id, expected_version=5)),
        pb.TaskCommand(command_id="c7", delete=pb.DeleteTaskRequest(id=existing.id)),
        pb.TaskCommand(command_id="c8", get=pb.GetTaskRequest(id=existing.id)),
    ]
    results = list(stub.ProcessTaskStream(iter(commands)))
    assert [r.command_id for r in results] == [c.command_id for c in commands]
    assert [r.success for r in results] == [True, False, True, False, False, False, True, False]
    codes = [r.code for r in results]
    assert codes == [0, 5, 0, 3, 3, 10, 0, 5]
    assert results[0].task.title == "made in stream"
    assert results[2].task.title == "renamed"
    assert results[6].task.id == existing.id
    assert all(r.error_message for r in results if not r.success)
    assert all(r.HasField("task") for r in results if r.success)


def test_process_stream_with_no_commands_ends_cleanly(stub: rpc.TaskServiceStub) -> None:
    assert list(stub.ProcessTaskStream(iter([]))) == []


def test_malformed_stream_message_is_invalid_argument(server: ServerProcess) -> None:
    call = server.channel().stream_unary("/taskservice.TaskService/BulkCreateTasks")
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: call(iter([b"\xff\xff"])))
