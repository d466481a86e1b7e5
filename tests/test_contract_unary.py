"""CreateTask, GetTask, UpdateTask, DeleteTask: semantics and every validation limit."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.rpc import expect_code, expect_invalid
from tests.servers import ServerProcess


def create(stub: rpc.TaskServiceStub, tag: str, **fields: Any) -> pb.Task:
    fields.setdefault("title", "a task")
    task: pb.Task = stub.CreateTask(pb.CreateTaskRequest(labels=[tag, *fields.pop("labels", [])], **fields))
    return task


# -- create -----------------------------------------------------------------------------------


def test_create_sets_server_fields(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = create(
        stub, tag, title="  Plan the sprint  ", description="d", assigned_to="bob", metadata={"k": "v"}
    )
    assert task.id
    assert task.title == "Plan the sprint"
    assert task.status == pb.TASK_STATUS_TODO
    assert task.priority == pb.PRIORITY_MEDIUM
    assert task.created_by == "anonymous"
    assert task.version == 1
    assert task.created_at == task.updated_at
    assert task.created_at.seconds > 0
    assert dict(task.metadata) == {"k": "v"}
    assert task.assigned_to == "bob"


def test_create_keeps_an_explicit_priority_and_due_date(stub: rpc.TaskServiceStub, tag: str) -> None:
    due = timestamp_pb2.Timestamp(seconds=1_900_000_000)
    task = create(stub, tag, priority=pb.PRIORITY_CRITICAL, due_date=due)
    assert task.priority == pb.PRIORITY_CRITICAL
    assert task.due_date == due


def test_repeated_request_id_returns_the_first_task_and_creates_nothing(
    stub: rpc.TaskServiceStub, tag: str
) -> None:
    first = create(stub, tag, request_id="req-1")
    again = create(stub, tag, request_id="req-1")
    assert again == first
    listed = stub.ListTasks(pb.ListTasksRequest(labels=[tag]))
    assert listed.total_count == 1


def test_replaying_a_request_id_after_its_task_was_deleted_is_not_found(
    stub: rpc.TaskServiceStub, tag: str
) -> None:
    """A replay returns the task as it now is; once deleted, NOT_FOUND saying so (and still
    creates nothing): never OK with the deleted task."""
    first = create(stub, tag, request_id=f"{tag}-replay")
    updated = stub.UpdateTask(pb.UpdateTaskRequest(id=first.id, title="renamed"))
    assert create(stub, tag, request_id=f"{tag}-replay") == updated
    stub.DeleteTask(pb.DeleteTaskRequest(id=first.id))
    error = expect_code(grpc.StatusCode.NOT_FOUND, lambda: create(stub, tag, request_id=f"{tag}-replay"))
    assert first.id in (error.details() or "") and "was deleted" in (error.details() or "")
    assert stub.ListTasks(pb.ListTasksRequest(labels=[tag])).total_count == 0


def test_request_id_reused_for_a_different_request_is_refused(stub: rpc.TaskServiceStub, tag: str) -> None:
    create(stub, tag, request_id="req-2", title="one")
    error = expect_code(
        grpc.StatusCode.ALREADY_EXISTS, lambda: create(stub, tag, request_id="req-2", title="two")
    )
    assert "request_id" in error.details()


@pytest.mark.parametrize(
    ("field", "request_fields"),
    [
        ("title", {"title": ""}),
        ("title", {"title": "   "}),
        ("title", {"title": "x" * 201}),
        ("description", {"description": "x" * 20_001}),
        ("labels", {"labels": [f"l{i}" for i in range(50)]}),  # plus the tag: 51
        ("labels[1]", {"labels": ["x" * 65]}),
        ("labels[1]", {"labels": [""]}),
        ("metadata", {"metadata": {f"k{i}": "v" for i in range(65)}}),
        ("metadata['" + "k" * 32 + "']", {"metadata": {"k" * 129: "v"}}),
        ("metadata['k']", {"metadata": {"k": "v" * 2049}}),
        ("assigned_to", {"assigned_to": "u" * 257}),
        ("priority", {"priority": 9}),
        ("due_date", {"due_date": timestamp_pb2.Timestamp(seconds=10**12)}),
        ("title", {"title": "nul\x00byte"}),
    ],
)
def test_create_rejects_values_past_each_limit(
    stub: rpc.TaskServiceStub, tag: str, field: str, request_fields: dict[str, Any]
) -> None:
    if "title" not in request_fields:
        request_fields["title"] = "ok"
    expect_invalid(field, lambda: create(stub, tag, **request_fields))


def test_create_accepts_values_at_each_limit(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = create(
        stub,
        tag,
        title="x" * 200,
        description="d" * 20_000,
        labels=[f"l{i}" for i in range(48)] + ["y" * 64],
        metadata={**{f"k{i}": "v" for i in range(63)}, "k" * 128: "v" * 2048},
        assigned_to="u" * 256,
    )
    assert len(task.title) == 200
    assert len(task.labels) == 50
    assert len(task.metadata) == 64


def test_create_reports_every_violation_at_once(stub: rpc.TaskServiceStub, tag: str) -> None:
    from tests.rpc import violations

    error = expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: create(stub, tag, title="", priority=7))
    assert {"title", "priority"} <= set(violations(error))


# -- get ----------------------------------------------------------------------------------------


def test_get_unknown_id_is_not_found(stub: rpc.TaskServiceStub) -> None:
    expect_code(grpc.StatusCode.NOT_FOUND, lambda: stub.GetTask(pb.GetTaskRequest(id="no-such-task")))


def test_get_empty_id_is_invalid(stub: rpc.TaskServiceStub) -> None:
    expect_invalid("id", lambda: stub.GetTask(pb.GetTaskRequest(id="")))


# -- update -------------------------------------------------------------------------------------


def test_update_changes_only_present_fields_and_bumps_version(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = create(stub, tag, title="old", description="keep me", metadata={"a": "1"})
    updated = stub.UpdateTask(
        pb.UpdateTaskRequest(id=task.id, title="new", status=pb.TASK_STATUS_IN_PROGRESS, metadata={"b": "2"})
    )
    assert updated.title == "new"
    assert updated.description == "keep me"
    assert updated.status == pb.TASK_STATUS_IN_PROGRESS
    assert dict(updated.metadata) == {"a": "1", "b": "2"}
    assert list(updated.labels) == [tag]
    assert updated.version == 2
    assert updated.created_at == task.created_at
    assert (updated.updated_at.seconds, updated.updated_at.nanos) > (
        task.updated_at.seconds,
        task.updated_at.nanos,
    )
    assert stub.GetTask(pb.GetTaskRequest(id=task.id)) == updated


def test_update_replaces_labels_when_given(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = create(stub, tag, labels=["a"])
    updated = stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, labels=[tag, "b"]))
    assert list(updated.labels) == [tag, "b"]


def test_update_mask_replaces_exactly_the_listed_paths(stub: rpc.TaskServiceStub, tag: str) -> None:
    due = timestamp_pb2.Timestamp(seconds=1_900_000_000)
    task = create(stub, tag, description="desc", metadata={"a": "1"}, due_date=due, labels=["x"])
    mask = field_mask_pb2.FieldMask(paths=["metadata", "due_date", "description"])
    updated = stub.UpdateTask(
        pb.UpdateTaskRequest(id=task.id, update_mask=mask, title="ignored: not in mask")
    )
    assert dict(updated.metadata) == {}
    assert not updated.HasField("due_date")
    assert updated.description == ""
    assert updated.title == task.title
    assert list(updated.labels) == [tag, "x"]
    cleared = stub.UpdateTask(
        pb.UpdateTaskRequest(id=task.id, update_mask=field_mask_pb2.FieldMask(paths=["labels"]))
    )
    assert list(cleared.labels) == []


def test_update_mask_with_unknown_path_is_invalid(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = create(stub, tag)
    mask = field_mask_pb2.FieldMask(paths=["created_by"])
    expect_invalid("update_mask", lambda: stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, update_mask=mask)))
    assert stub.GetTask(pb.GetTaskRequest(id=task.id)) == task


def test_update_with_stale_expected_version_is_aborted_and_changes_nothing(
    stub: rpc.TaskServiceStub, tag: str
) -> None:
    task = create(stub, tag)
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="v2", expected_version=1))
    expect_code(
        grpc.StatusCode.ABORTED,
        lambda: stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="v3", expected_version=1)),
    )
    assert stub.GetTask(pb.GetTaskRequest(id=task.id)).title == "v2"


def test_update_that_changes_nothing_keeps_the_version(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = create(stub, tag, title="same")
    again = stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="same"))
    assert again.version == task.version


@pytest.mark.parametrize(
    ("field", "request_fields"),
    [
        ("title", {"title": ""}),
        ("title", {"title": "t" * 201}),
        ("status", {"status": pb.TASK_STATUS_UNSPECIFIED}),
        ("status", {"status": 42}),
        ("priority", {"priority": 42}),
        ("labels[0]", {"labels": ["l" * 65]}),
        ("expected_version", {"expected_version": -1}),
    ],
)
def test_update_rejects_invalid_values_and_keeps_the_task(
    stub: rpc.TaskServiceStub, tag: str, field: str, request_fields: dict[str, Any]
) -> None:
    task = create(stub, tag)
    expect_invalid(field, lambda: stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, **request_fields)))
    assert stub.GetTask(pb.GetTaskRequest(id=task.id)) == task


def test_update_unknown_task_is_not_found(stub: rpc.TaskServiceStub) -> None:
    expect_code(
        grpc.StatusCode.NOT_FOUND, lambda: stub.UpdateTask(pb.UpdateTaskRequest(id="missing", title="x"))
    )


def test_merged_metadata_over_the_limit_is_invalid(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = create(stub, tag, metadata={f"a{i}": "v" for i in range(40)})
    extra = {f"b{i}": "v" for i in range(30)}
    expect_invalid("metadata", lambda: stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, metadata=extra)))


# -- delete -------------------------------------------------------------------------------------


def test_delete_removes_the_task(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = create(stub, tag)
    stub.DeleteTask(pb.DeleteTaskRequest(id=task.id))
    expect_code(grpc.StatusCode.NOT_FOUND, lambda: stub.GetTask(pb.GetTaskRequest(id=task.id)))
    expect_code(grpc.StatusCode.NOT_FOUND, lambda: stub.DeleteTask(pb.DeleteTaskRequest(id=task.id)))


def test_delete_with_stale_expected_version_is_aborted(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = create(stub, tag)
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="v2"))
    expect_code(
        grpc.StatusCode.ABORTED, lambda: stub.DeleteTask(pb.DeleteTaskRequest(id=task.id, expected_version=1))
    )
    stub.DeleteTask(pb.DeleteTaskRequest(id=task.id, expected_version=2))


def test_malformed_request_bytes_are_invalid_argument(server: ServerProcess) -> None:
    channel = server.channel()
    call = channel.unary_unary("/taskservice.TaskService/GetTask")
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: call(b"\x0a\x05\xff\xfe\xfd\xfc\xfb"))
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: call(b"\xff\xff\xff"))
