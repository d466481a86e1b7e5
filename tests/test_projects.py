"""Projects (CONTRACT §5.1): the whole role matrix — owner, editor, viewer, an assignee outside the
project, a stranger and an admin — on every RPC, on SQLite and on two PostgreSQL replicas behind
round-robin (so a membership set on one replica is enforced by the other); subtasks; the trash."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from taskservice.api import task_service_pb2 as pb
from tests.rpc import expect_code
from tests.teams import ROLES, Crew, Metadata
from tests.watching import Watch

OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def code_of(call: Callable[..., object], *args: Any, **kwargs: Any) -> grpc.StatusCode:
    """The status `call(*args, **kwargs)` ends with (OK when it returns)."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error.code()
    return OK


def check_matrix(crew: Crew, expected: dict[str, grpc.StatusCode], call: Callable[[Metadata], Any]) -> None:
    got = {role: code_of(call, crew.who[role]) for role in ROLES}
    assert got == expected


def test_the_creator_is_the_owner_and_members_are_listed(crew: Crew) -> None:
    roles = {m.user: m.role for m in crew.project.members}
    assert roles == {
        crew.users["owner"]: pb.PROJECT_ROLE_OWNER,
        crew.users["editor"]: pb.PROJECT_ROLE_EDITOR,
        crew.users["viewer"]: pb.PROJECT_ROLE_VIEWER,
    }
    assert crew.project.created_by == crew.users["owner"] and crew.project.version == 1


def test_get_task(crew: Crew) -> None:
    task = crew.task()
    expected = dict(owner=OK, editor=OK, viewer=OK, assignee=OK, stranger=NOT_FOUND, admin=OK)
    check_matrix(crew, expected, lambda who: crew.stub.GetTask(pb.GetTaskRequest(id=task.id), metadata=who))


def test_update_task(crew: Crew) -> None:
    task = crew.task()
    expected = dict(owner=OK, editor=OK, viewer=DENIED, assignee=OK, stranger=NOT_FOUND, admin=OK)
    check_matrix(
        crew,
        expected,
        lambda who: crew.stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, description="x"), metadata=who),
    )


def test_delete_and_undelete_task(crew: Crew) -> None:
    s = crew.stub
    tasks = {role: crew.task(f"for {role}") for role in ROLES}
    expected = dict(owner=OK, editor=OK, viewer=DENIED, assignee=DENIED, stranger=NOT_FOUND, admin=OK)

    def delete(role: str) -> Any:
        return s.DeleteTask(pb.DeleteTaskRequest(id=tasks[role].id), metadata=crew.who[role])

    def undelete(role: str) -> Any:
        return s.UndeleteTask(pb.UndeleteTaskRequest(id=tasks[role].id), metadata=crew.who[role])

    assert {role: code_of(delete, role) for role in ROLES} == expected
    for role, code in expected.items():  # the owner trashes what the others could not
        if code != OK:
            s.DeleteTask(pb.DeleteTaskRequest(id=tasks[role].id), metadata=crew.who["owner"])
    assert {role: code_of(undelete, role) for role in ROLES} == expected


def test_create_task_in_the_project(crew: Crew) -> None:
    expected = dict(owner=OK, editor=OK, viewer=DENIED, assignee=NOT_FOUND, stranger=NOT_FOUND, admin=OK)
    check_matrix(
        crew,
        expected,
        lambda who: crew.stub.CreateTask(
            pb.CreateTaskRequest(title="new", project_id=crew.project.id), metadata=who
        ),
    )


def test_list_and_count_follow_the_roles(crew: Crew) -> None:
    mine = crew.task("assigned")
    other = crew.stub.CreateTask(
        pb.CreateTaskRequest(title="not assigned", project_id=crew.project.id), metadata=crew.who["editor"]
    )
    both = {mine.id, other.id}
    expected = dict(owner=both, editor=both, viewer=both, assignee={mine.id}, stranger=set(), admin=both)
    for role in ROLES:
        page = crew.stub.ListTasks(pb.ListTasksRequest(project_id=crew.project.id), metadata=crew.who[role])
        assert {t.id for t in page.tasks} == expected[role], role
        assert page.total_count == len(expected[role]), role


def test_watch_initial_state_follows_the_roles(crew: Crew) -> None:
    mine = crew.task("assigned")
    other = crew.stub.CreateTask(
        pb.CreateTaskRequest(title="not assigned", project_id=crew.project.id), metadata=crew.who["editor"]
    )
    both = {mine.id, other.id}
    expected = dict(owner=both, editor=both, viewer=both, assignee={mine.id}, stranger=set(), admin=both)
    request = pb.WatchTasksRequest(include_initial=True, project_ids=[crew.project.id])
    for role in ROLES:
        watch = Watch(crew.stub, request, metadata=crew.who[role])
        try:
            seen = {e.task.id for e in watch.take(len(expected[role]))}
            assert watch.quiet(0.3), role
            assert seen == expected[role], role
        finally:
            watch.cancel()


def test_bulk_and_process_streams_follow_the_roles(crew: Crew) -> None:
    task = crew.task()
    bulk_expected = dict(owner=0, editor=0, viewer=7, assignee=5, stranger=5, admin=0)
    for role in ROLES:
        response = crew.stub.BulkCreateTasks(
            iter([pb.CreateTaskRequest(title="bulk", project_id=crew.project.id)]), metadata=crew.who[role]
        )
        code = response.errors[0].code if response.errors else 0
        assert code == bulk_expected[role], role
    process_expected = dict(owner=0, editor=0, viewer=0, assignee=0, stranger=5, admin=0)
    for role in ROLES:
        command = pb.TaskCommand(get=pb.GetTaskRequest(id=task.id), command_id="c")
        (result,) = list(crew.stub.ProcessTaskStream(iter([command]), metadata=crew.who[role]))
        assert result.code == process_expected[role], role


def test_get_and_list_projects(crew: Crew) -> None:
    expected = dict(owner=OK, editor=OK, viewer=OK, assignee=NOT_FOUND, stranger=NOT_FOUND, admin=OK)
    check_matrix(
        crew,
        expected,
        lambda who: crew.stub.GetProject(pb.GetProjectRequest(id=crew.project.id), metadata=who),
    )
    for role in ROLES:
        listed = crew.stub.ListProjects(pb.ListProjectsRequest(page_size=1000), metadata=crew.who[role])
        ids = {p.id for p in listed.projects}
        assert (crew.project.id in ids) == (expected[role] == OK), role


def test_update_project(crew: Crew) -> None:
    expected = dict(owner=OK, editor=DENIED, viewer=DENIED, assignee=NOT_FOUND, stranger=NOT_FOUND, admin=OK)
    check_matrix(
        crew,
        expected,
        lambda who: crew.stub.UpdateProject(
            pb.UpdateProjectRequest(id=crew.project.id, description=f"by {who[0][1][-6:]}"), metadata=who
        ),
    )
    masked = crew.stub.UpdateProject(
        pb.UpdateProjectRequest(
            id=crew.project.id, title="Renamed", update_mask=field_mask_pb2.FieldMask(paths=["title"])
        ),
        metadata=crew.who["owner"],
    )
    assert masked.title == "Renamed" and masked.version > crew.project.version


def test_set_member(crew: Crew) -> None:
    expected = dict(owner=OK, editor=DENIED, viewer=DENIED, assignee=NOT_FOUND, stranger=NOT_FOUND, admin=OK)
    newcomer = f"new-{uuid.uuid4().hex[:6]}"
    check_matrix(
        crew,
        expected,
        lambda who: crew.stub.SetProjectMember(
            pb.SetProjectMemberRequest(
                project_id=crew.project.id, user=newcomer, role=pb.PROJECT_ROLE_VIEWER
            ),
            metadata=who,
        ),
    )


def test_delete_project(crew: Crew) -> None:
    crew.task()
    expected = dict(
        owner=PRECONDITION,
        editor=DENIED,
        viewer=DENIED,
        assignee=NOT_FOUND,
        stranger=NOT_FOUND,
        admin=PRECONDITION,
    )
    check_matrix(
        crew,
        expected,
        lambda who: crew.stub.DeleteProject(pb.DeleteProjectRequest(id=crew.project.id), metadata=who),
    )


def test_a_project_holding_tasks_is_deleted_only_with_force(crew: Crew) -> None:
    task = crew.task()
    s, owner = crew.stub, crew.who["owner"]
    expect_code(
        PRECONDITION, lambda: s.DeleteProject(pb.DeleteProjectRequest(id=crew.project.id), metadata=owner)
    )
    s.DeleteProject(pb.DeleteProjectRequest(id=crew.project.id, force=True), metadata=owner)
    expect_code(NOT_FOUND, lambda: s.GetProject(pb.GetProjectRequest(id=crew.project.id), metadata=owner))
    expect_code(NOT_FOUND, lambda: s.GetTask(pb.GetTaskRequest(id=task.id), metadata=crew.who["admin"]))


def test_the_last_owner_cannot_leave_or_be_demoted(crew: Crew) -> None:
    s, owner, project_id = crew.stub, crew.who["owner"], crew.project.id
    me = crew.users["owner"]
    for role in (pb.PROJECT_ROLE_UNSPECIFIED, pb.PROJECT_ROLE_EDITOR):
        request = pb.SetProjectMemberRequest(project_id=project_id, user=me, role=role)
        assert code_of(s.SetProjectMember, request, metadata=owner) == PRECONDITION
    s.SetProjectMember(
        pb.SetProjectMemberRequest(
            project_id=project_id, user=crew.users["editor"], role=pb.PROJECT_ROLE_OWNER
        ),
        metadata=owner,
    )
    left = s.SetProjectMember(pb.SetProjectMemberRequest(project_id=project_id, user=me), metadata=owner)
    assert me not in {m.user for m in left.members}
    expect_code(NOT_FOUND, lambda: s.GetProject(pb.GetProjectRequest(id=project_id), metadata=owner))


def test_a_viewer_may_leave_and_then_sees_nothing(crew: Crew) -> None:
    task = crew.task()
    s, viewer = crew.stub, crew.who["viewer"]
    s.SetProjectMember(
        pb.SetProjectMemberRequest(project_id=crew.project.id, user=crew.users["viewer"]), metadata=viewer
    )
    eventually(
        lambda: code_of(lambda: s.GetTask(pb.GetTaskRequest(id=task.id), metadata=viewer)) == NOT_FOUND
    )


def test_a_member_just_added_on_one_replica_is_let_in_by_the_next(crew: Crew) -> None:
    task = crew.task()
    s, stranger = crew.stub, crew.who["stranger"]
    expect_code(
        NOT_FOUND, lambda: s.GetTask(pb.GetTaskRequest(id=task.id), metadata=stranger)
    )  # caches "none"
    s.SetProjectMember(
        pb.SetProjectMemberRequest(
            project_id=crew.project.id, user=crew.users["stranger"], role=pb.PROJECT_ROLE_EDITOR
        ),
        metadata=crew.who["owner"],
    )
    for _ in range(4):  # round-robin: every replica answers at once
        assert s.GetTask(pb.GetTaskRequest(id=task.id), metadata=stranger).id == task.id
        s.UpdateTask(pb.UpdateTaskRequest(id=task.id, description="joined"), metadata=stranger)


def test_moving_a_task_between_projects_needs_editor_on_both(crew: Crew) -> None:
    s = crew.stub
    task = crew.task()
    other = s.CreateProject(
        pb.CreateProjectRequest(
            title="Other", members=[pb.ProjectMember(user=crew.users["viewer"], role=pb.PROJECT_ROLE_EDITOR)]
        ),
        metadata=crew.who["editor"],
    )
    move = pb.UpdateTaskRequest(id=task.id, project_id=other.id)
    expect_code(NOT_FOUND, lambda: s.UpdateTask(move, metadata=crew.who["owner"]))  # not in `other`
    expect_code(DENIED, lambda: s.UpdateTask(move, metadata=crew.who["viewer"]))  # viewer at the source
    expect_code(DENIED, lambda: s.UpdateTask(move, metadata=crew.who["assignee"]))
    moved = s.UpdateTask(move, metadata=crew.who["editor"])
    assert moved.project_id == other.id
    expect_code(NOT_FOUND, lambda: s.GetTask(pb.GetTaskRequest(id=task.id), metadata=crew.who["owner"]))


def test_personal_tasks_keep_their_rules(crew: Crew) -> None:
    s = crew.stub
    task = s.CreateTask(pb.CreateTaskRequest(title="mine"), metadata=crew.who["viewer"])
    assert s.GetTask(pb.GetTaskRequest(id=task.id), metadata=crew.who["viewer"]).id == task.id
    expect_code(NOT_FOUND, lambda: s.GetTask(pb.GetTaskRequest(id=task.id), metadata=crew.who["owner"]))


# -- subtasks ------------------------------------------------------------------------------------


def test_subtasks_are_listed_under_their_parent(crew: Crew) -> None:
    s, editor = crew.stub, crew.who["editor"]
    parent = crew.task("parent")
    children = [
        s.CreateTask(
            pb.CreateTaskRequest(title=f"child {i}", project_id=crew.project.id, parent_id=parent.id),
            metadata=editor,
        )
        for i in range(3)
    ]
    page = s.ListTasks(pb.ListTasksRequest(parent_id=parent.id), metadata=crew.who["viewer"])
    assert [t.id for t in page.tasks] == [c.id for c in children]
    assert all(t.parent_id == parent.id for t in page.tasks)


def test_a_subtask_stays_in_its_parents_project(crew: Crew) -> None:
    s, owner = crew.stub, crew.who["owner"]
    parent = crew.task("parent")
    personal = pb.CreateTaskRequest(title="elsewhere", parent_id=parent.id)
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: s.CreateTask(personal, metadata=owner))
    hidden = s.CreateTask(pb.CreateTaskRequest(title="hidden"), metadata=crew.who["stranger"])
    under_hidden = pb.CreateTaskRequest(title="x", project_id=crew.project.id, parent_id=hidden.id)
    expect_code(NOT_FOUND, lambda: s.CreateTask(under_hidden, metadata=owner))


def test_subtask_cycles_are_refused(crew: Crew) -> None:
    s, owner = crew.stub, crew.who["owner"]
    a = crew.task("a")
    b = s.CreateTask(
        pb.CreateTaskRequest(title="b", project_id=crew.project.id, parent_id=a.id), metadata=owner
    )
    c = s.CreateTask(
        pb.CreateTaskRequest(title="c", project_id=crew.project.id, parent_id=b.id), metadata=owner
    )
    for task_id, parent_id in ((a.id, c.id), (a.id, b.id), (a.id, a.id)):
        move = pb.UpdateTaskRequest(id=task_id, parent_id=parent_id)
        error = expect_code(grpc.StatusCode.INVALID_ARGUMENT, partial(s.UpdateTask, move, metadata=owner))
        assert "cycle" in error.details()
    assert s.GetTask(pb.GetTaskRequest(id=a.id), metadata=owner).parent_id == ""


def test_subtasks_nest_at_most_eight_levels(crew: Crew) -> None:
    s, owner = crew.stub, crew.who["owner"]
    chain = [crew.task("level 0")]
    for level in range(1, 9):
        chain.append(
            s.CreateTask(
                pb.CreateTaskRequest(
                    title=f"level {level}", project_id=crew.project.id, parent_id=chain[-1].id
                ),
                metadata=owner,
            )
        )
    too_deep = pb.CreateTaskRequest(title="level 9", project_id=crew.project.id, parent_id=chain[-1].id)
    assert (
        "8 levels"
        in expect_code(
            grpc.StatusCode.INVALID_ARGUMENT, lambda: s.CreateTask(too_deep, metadata=owner)
        ).details()
    )
    # Hanging the whole chain under another task would make it one level deeper: refused too.
    top = crew.task("top")
    expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: s.UpdateTask(pb.UpdateTaskRequest(id=chain[0].id, parent_id=top.id), metadata=owner),
    )


# -- trash ---------------------------------------------------------------------------------------


def test_trash_round_trip(crew: Crew) -> None:
    s, owner = crew.stub, crew.who["owner"]
    task = crew.task("to the trash")
    watch = Watch(s, pb.WatchTasksRequest(task_ids=[task.id]), metadata=crew.who["viewer"])
    try:
        time.sleep(0.3)
        s.DeleteTask(pb.DeleteTaskRequest(id=task.id), metadata=owner)
        expect_code(NOT_FOUND, lambda: s.GetTask(pb.GetTaskRequest(id=task.id), metadata=owner))
        trashed = s.GetTask(pb.GetTaskRequest(id=task.id, show_deleted=True), metadata=owner)
        assert trashed.HasField("delete_time") and trashed.title == task.title
        live = s.ListTasks(pb.ListTasksRequest(project_id=crew.project.id), metadata=owner)
        assert task.id not in {t.id for t in live.tasks}
        trash = s.ListTasks(
            pb.ListTasksRequest(project_id=crew.project.id, show_deleted=True), metadata=owner
        )
        assert [t.id for t in trash.tasks] == [task.id] and trash.total_count == 1
        expect_code(NOT_FOUND, lambda: s.DeleteTask(pb.DeleteTaskRequest(id=task.id), metadata=owner))
        expect_code(
            NOT_FOUND, lambda: s.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="x"), metadata=owner)
        )
        restored = s.UndeleteTask(pb.UndeleteTaskRequest(id=task.id), metadata=owner)
        assert not restored.HasField("delete_time") and restored.version == task.version + 1
        assert s.GetTask(pb.GetTaskRequest(id=task.id), metadata=owner) == restored
        deleted, created = watch.take(2)
        assert (deleted.event_type, created.event_type) == (pb.EVENT_TYPE_DELETED, pb.EVENT_TYPE_CREATED)
        assert created.task == restored
    finally:
        watch.cancel()


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
