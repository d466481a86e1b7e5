"""The service layer's rules over the in-memory store: access, versions, idempotency, paging."""

from __future__ import annotations

import pytest

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    VersionConflict,
)
from tests.unit.conftest import InProcess, People


def create(app: InProcess, caller: Caller, title: str = "t", **fields: object) -> pb.Task:
    request = pb.CreateTaskRequest(title=title, **fields)  # type: ignore[arg-type]
    return app.run(app.service.create(caller, request))


def test_create_then_get(app: InProcess, people: People) -> None:
    task = create(app, people.alice, "  Plan  ", labels=[people.tag])
    assert (task.title, task.created_by, task.version, task.status) == (
        "Plan",
        people.alice.user_id,
        1,
        pb.TASK_STATUS_TODO,
    )
    assert app.run(app.service.get(people.alice, pb.GetTaskRequest(id=task.id))) == task


def test_others_cannot_tell_a_hidden_task_from_a_missing_one(app: InProcess, people: People) -> None:
    task = create(app, people.alice)
    with pytest.raises(NotFound) as hidden:
        app.run(app.service.get(people.bob, pb.GetTaskRequest(id=task.id)))
    with pytest.raises(NotFound) as missing:
        app.run(app.service.get(people.bob, pb.GetTaskRequest(id="00000000-0000-7000-8000-000000000000")))
    assert hidden.value.message.replace(task.id, "?") == missing.value.message.replace(
        "00000000-0000-7000-8000-000000000000", "?"
    )
    assert app.run(app.service.get(people.admin, pb.GetTaskRequest(id=task.id))).id == task.id


def test_the_assignee_may_update_but_not_delete(app: InProcess, people: People) -> None:
    task = create(app, people.alice, assigned_to=people.bob.user_id)
    updated = app.run(
        app.service.update(people.bob, pb.UpdateTaskRequest(id=task.id, status=pb.TASK_STATUS_DONE))
    )
    assert (updated.status, updated.version) == (pb.TASK_STATUS_DONE, 2)
    with pytest.raises(PermissionDenied):
        app.run(app.service.delete(people.bob, pb.DeleteTaskRequest(id=task.id)))
    app.run(app.service.delete(people.alice, pb.DeleteTaskRequest(id=task.id)))


def test_expected_version_guards_updates(app: InProcess, people: People) -> None:
    task = create(app, people.alice)
    with pytest.raises(VersionConflict):
        app.run(
            app.service.update(people.alice, pb.UpdateTaskRequest(id=task.id, title="x", expected_version=7))
        )
    done = app.run(
        app.service.update(people.alice, pb.UpdateTaskRequest(id=task.id, title="x", expected_version=1))
    )
    assert (done.title, done.version) == ("x", 2)


def test_an_update_that_changes_nothing_keeps_the_version(app: InProcess, people: People) -> None:
    task = create(app, people.alice, "same")
    again = app.run(app.service.update(people.alice, pb.UpdateTaskRequest(id=task.id, title="same")))
    assert again.version == task.version


def test_a_repeated_request_id_returns_the_first_task_and_a_different_request_is_refused(
    app: InProcess, people: People
) -> None:
    first = create(app, people.alice, "once", request_id=f"r-{people.tag}")
    assert create(app, people.alice, "once", request_id=f"r-{people.tag}") == first
    with pytest.raises(AlreadyExists):
        create(app, people.alice, "something else", request_id=f"r-{people.tag}")


def test_invalid_input_changes_nothing(app: InProcess, people: People) -> None:
    with pytest.raises(InvalidArgument):
        create(app, people.alice, "", labels=[people.tag])
    listed = app.run(app.service.list(people.alice, pb.ListTasksRequest(labels=[people.tag])))
    assert (list(listed.tasks), listed.total_count) == ([], 0)


def test_pages_visit_every_visible_match_once_in_order(app: InProcess, people: People) -> None:
    mine = [create(app, people.alice, f"a{i}", labels=[people.tag]) for i in range(5)]
    create(app, people.bob, "not alice's", labels=[people.tag])
    seen: list[str] = []
    token = ""
    while True:
        request = pb.ListTasksRequest(labels=[people.tag], page_size=2, page_token=token)
        page = app.run(app.service.list(people.alice, request))
        assert page.total_count == 5
        seen += [t.id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert seen == [t.id for t in mine]


def test_a_page_token_from_another_query_is_refused(app: InProcess, people: People) -> None:
    for i in range(3):
        create(app, people.alice, f"a{i}", labels=[people.tag])
    page = app.run(app.service.list(people.alice, pb.ListTasksRequest(labels=[people.tag], page_size=1)))
    with pytest.raises(InvalidArgument):
        other = pb.ListTasksRequest(
            labels=[people.tag], page_size=1, order_by="priority", page_token=page.next_page_token
        )
        app.run(app.service.list(people.alice, other))


def test_batch_create_reports_each_failure_by_index_and_refuses_more_than_1000(
    app: InProcess, people: People
) -> None:
    items = [pb.CreateTaskRequest(title=title, labels=[people.tag]) for title in ("one", "", "three")]
    response = app.run(app.service.batch_create(people.alice, pb.BatchCreateTasksRequest(requests=items)))
    assert [t.title for t in response.tasks] == ["one", "three"] and response.success_count == 2
    assert [(e.index, e.code) for e in response.errors] == [(1, 3)]
    too_many = pb.BatchCreateTasksRequest(requests=[pb.CreateTaskRequest(title="x")] * 1001)
    with pytest.raises(InvalidArgument, match="at most 1000"):
        app.run(app.service.batch_create(people.alice, too_many))
