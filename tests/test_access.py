"""Authorization: two users and an admin on every RPC path. A creator has full rights, an assignee
may read and update but not delete, everyone else gets NOT_FOUND as if the task did not exist, and
admins see everything. Lists, counts, watches (initial, live, replay) and streams all agree."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.rpc import expect_code
from tests.servers import ServerProcess, bearer
from tests.watching import Watch

Metadata = list[tuple[str, str]]


@dataclass
class People:
    stub: rpc.TaskServiceStub
    alice: Metadata
    bob: Metadata
    admin: Metadata
    alice_id: str
    bob_id: str
    tag: str

    def create(self, who: Metadata, title: str, **fields: object) -> pb.Task:
        request = pb.CreateTaskRequest(title=title, labels=[self.tag], **fields)  # type: ignore[arg-type]
        task: pb.Task = self.stub.CreateTask(request, metadata=who)
        return task


@pytest.fixture
def people(jwt_server: ServerProcess) -> People:
    suffix = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{suffix}", f"bob-{suffix}"
    return People(
        stub=jwt_server.stub(),
        alice=bearer(jwt_server.token(alice)),
        bob=bearer(jwt_server.token(bob)),
        admin=bearer(jwt_server.token(f"root-{suffix}", admin=True)),
        alice_id=alice,
        bob_id=bob,
        tag=f"acl-{suffix}",
    )


def test_another_users_task_is_indistinguishable_from_a_missing_one(people: People) -> None:
    task = people.create(people.alice, "alice's secret")
    missing = str(uuid.uuid4())
    s, bob = people.stub, people.bob
    calls = {
        "get": lambda task_id: s.GetTask(pb.GetTaskRequest(id=task_id), metadata=bob),
        "update": lambda task_id: s.UpdateTask(
            pb.UpdateTaskRequest(id=task_id, title="mine now"), metadata=bob
        ),
        "update at version": lambda task_id: s.UpdateTask(
            pb.UpdateTaskRequest(id=task_id, title="x", expected_version=7), metadata=bob
        ),
        "delete": lambda task_id: s.DeleteTask(pb.DeleteTaskRequest(id=task_id), metadata=bob),
    }
    for name, call in calls.items():
        hidden = expect_code(grpc.StatusCode.NOT_FOUND, functools.partial(call, task.id))
        absent = expect_code(grpc.StatusCode.NOT_FOUND, functools.partial(call, missing))
        assert hidden.details().replace(task.id, missing) == absent.details(), name
    assert s.GetTask(pb.GetTaskRequest(id=task.id), metadata=people.alice) == task


def test_assignee_may_read_and_update_but_not_delete(people: People) -> None:
    s = people.stub
    task = people.create(people.alice, "for bob", assigned_to=people.bob_id)
    assert s.GetTask(pb.GetTaskRequest(id=task.id), metadata=people.bob) == task
    updated = s.UpdateTask(
        pb.UpdateTaskRequest(id=task.id, status=pb.TASK_STATUS_IN_PROGRESS), metadata=people.bob
    )
    assert (updated.version, updated.created_by) == (2, people.alice_id)
    expect_code(
        grpc.StatusCode.PERMISSION_DENIED,
        lambda: s.DeleteTask(pb.DeleteTaskRequest(id=task.id), metadata=people.bob),
    )
    s.DeleteTask(pb.DeleteTaskRequest(id=task.id), metadata=people.alice)
    expect_code(
        grpc.StatusCode.NOT_FOUND, lambda: s.GetTask(pb.GetTaskRequest(id=task.id), metadata=people.alice)
    )


def test_admin_reads_changes_and_deletes_any_task(people: People) -> None:
    s = people.stub
    task = people.create(people.alice, "anyone's")
    assert s.GetTask(pb.GetTaskRequest(id=task.id), metadata=people.admin) == task
    updated = s.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="moderated"), metadata=people.admin)
    assert updated.title == "moderated"
    s.DeleteTask(pb.DeleteTaskRequest(id=task.id), metadata=people.admin)


def _list_all(people: People, who: Metadata, **filters: object) -> tuple[list[pb.Task], set[int]]:
    """Every task through pages of one; returns the tasks and every total_count seen."""
    tasks: list[pb.Task] = []
    totals: set[int] = set()
    token = ""
    while True:
        request = pb.ListTasksRequest(page_size=1, page_token=token, labels=[people.tag], **filters)  # type: ignore[arg-type]
        page = people.stub.ListTasks(request, metadata=who)
        tasks += page.tasks
        totals.add(page.total_count)
        token = page.next_page_token
        if not token:
            return tasks, totals


def test_list_and_total_count_show_only_what_the_caller_may_see(people: People) -> None:
    alice_own = [people.create(people.alice, f"alice {i}") for i in range(2)]
    shared = people.create(people.alice, "alice for bob", assigned_to=people.bob_id)
    bob_own = [people.create(people.bob, f"bob {i}") for i in range(2)]

    def ids(tasks: list[pb.Task]) -> set[str]:
        return {t.id for t in tasks}

    bob_sees, bob_totals = _list_all(people, people.bob)
    assert ids(bob_sees) == ids([*bob_own, shared]) and bob_totals == {3}
    alice_sees, alice_totals = _list_all(people, people.alice)
    assert ids(alice_sees) == ids([*alice_own, shared]) and alice_totals == {3}
    admin_sees, admin_totals = _list_all(people, people.admin)
    assert len(admin_sees) == 5 and admin_totals == {5}
    by_alice, totals = _list_all(people, people.bob, created_by=people.alice_id)
    assert ids(by_alice) == {shared.id} and totals == {1}


def test_a_page_token_works_only_for_the_caller_it_was_issued_to(people: People) -> None:
    for i in range(3):
        people.create(people.alice, f"page {i}", assigned_to=people.bob_id)
    request = pb.ListTasksRequest(labels=[people.tag], page_size=1)
    token = people.stub.ListTasks(request, metadata=people.alice).next_page_token
    request.page_token = token
    assert people.stub.ListTasks(request, metadata=people.alice).tasks
    for other in (people.bob, people.admin):  # both see the same tasks, yet the token is not theirs
        expect_code(
            grpc.StatusCode.INVALID_ARGUMENT,
            functools.partial(people.stub.ListTasks, request, metadata=other),
        )


def _watch(people: People, who: Metadata, request: pb.WatchTasksRequest) -> Watch:
    return Watch(people.stub, request, metadata=who)


def _until_sentinel(people: People, who: Metadata, watch: Watch) -> list[pb.TaskEvent]:
    """Events up to a task the watcher creates now: everything before it has been delivered, so
    what is missing was filtered out, not late."""
    sentinel = people.create(who, "sentinel")
    events = []
    while (event := watch.next()).task.id != sentinel.id:
        events.append(event)
    watch.cancel()
    return events


def test_watch_initial_live_and_replay_show_only_visible_tasks(people: People) -> None:
    s = people.stub
    alice_before = people.create(people.alice, "alice before")
    ready = people.create(people.bob, "bob ready")
    watch = _watch(people, people.bob, pb.WatchTasksRequest(labels=[people.tag], include_initial=True))
    initial = watch.next()
    assert (initial.event_type, initial.task.id) == (pb.EVENT_TYPE_CREATED, ready.id)

    alice_live = people.create(people.alice, "alice live")
    s.UpdateTask(pb.UpdateTaskRequest(id=alice_before.id, title="alice edits"), metadata=people.alice)
    s.DeleteTask(pb.DeleteTaskRequest(id=alice_live.id), metadata=people.alice)
    shared = people.create(people.alice, "alice for bob", assigned_to=people.bob_id)
    s.UpdateTask(pb.UpdateTaskRequest(id=shared.id, status=pb.TASK_STATUS_DONE), metadata=people.bob)
    live = _until_sentinel(people, people.bob, watch)
    assert [(e.event_type, e.task.id, e.triggered_by) for e in live] == [
        (pb.EVENT_TYPE_CREATED, shared.id, people.alice_id),
        (pb.EVENT_TYPE_UPDATED, shared.id, people.bob_id),
    ]

    replay = _watch(
        people, people.bob, pb.WatchTasksRequest(labels=[people.tag], after_sequence=initial.sequence)
    )
    replayed = _until_sentinel(people, people.bob, replay)
    assert [(e.event_type, e.task.id) for e in replayed][:2] == [
        (pb.EVENT_TYPE_CREATED, shared.id),
        (pb.EVENT_TYPE_UPDATED, shared.id),
    ]
    assert {e.task.created_by for e in replayed} <= {people.alice_id, people.bob_id}
    assert not {alice_before.id, alice_live.id} & {e.task.id for e in replayed}

    admin = _watch(
        people, people.admin, pb.WatchTasksRequest(labels=[people.tag], after_sequence=initial.sequence)
    )
    assert {alice_live.id, alice_before.id} <= {
        e.task.id for e in _until_sentinel(people, people.admin, admin)
    }


def test_watch_by_task_id_does_not_reveal_another_users_task(people: People) -> None:
    secret = people.create(people.alice, "alice only")
    ready = people.create(people.bob, "bob ready")
    request = pb.WatchTasksRequest(task_ids=[secret.id, ready.id], include_initial=True)
    watch = _watch(people, people.bob, request)
    assert watch.next().task.id == ready.id
    people.stub.UpdateTask(pb.UpdateTaskRequest(id=secret.id, title="changed"), metadata=people.alice)
    people.stub.UpdateTask(pb.UpdateTaskRequest(id=ready.id, title="bob changed"), metadata=people.bob)
    assert watch.next().task.title == "bob changed"
    watch.cancel()


def test_reassigned_task_leaves_the_ex_assignees_watch_without_its_new_content(people: People) -> None:
    s = people.stub
    task = people.create(people.alice, "bob's job", assigned_to=people.bob_id)
    watch = _watch(people, people.bob, pb.WatchTasksRequest(labels=[people.tag], include_initial=True))
    assert watch.next().task == task
    s.UpdateTask(
        pb.UpdateTaskRequest(id=task.id, assigned_to="carol", title="carol's job, secret plan"),
        metadata=people.alice,
    )
    s.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="more secrets"), metadata=people.alice)
    events = _until_sentinel(people, people.bob, watch)
    assert len(events) == 1
    left = events[0]
    assert left.event_type == pb.EVENT_TYPE_DELETED
    assert left.task == task  # as bob last saw it: nothing of the new content
    assert left.sequence > 0

    back = s.UpdateTask(pb.UpdateTaskRequest(id=task.id, assigned_to=people.bob_id), metadata=people.alice)
    watch = _watch(
        people, people.bob, pb.WatchTasksRequest(labels=[people.tag], after_sequence=left.sequence)
    )
    assert [e.task for e in _until_sentinel(people, people.bob, watch) if e.task.id == task.id] == [back]


def test_bulk_and_process_streams_apply_the_same_rules(people: People) -> None:
    s = people.stub
    task = people.create(people.alice, "alice's")
    bulk = s.BulkCreateTasks(
        iter([pb.CreateTaskRequest(title=f"bulk {i}", labels=[people.tag]) for i in range(3)]),
        metadata=people.bob,
    )
    assert bulk.success_count == 3 and {t.created_by for t in bulk.tasks} == {people.bob_id}

    commands = [
        pb.TaskCommand(command_id="get", get=pb.GetTaskRequest(id=task.id)),
        pb.TaskCommand(command_id="update", update=pb.UpdateTaskRequest(id=task.id, title="bob was here")),
        pb.TaskCommand(command_id="delete", delete=pb.DeleteTaskRequest(id=task.id)),
        pb.TaskCommand(command_id="create", create=pb.CreateTaskRequest(title="bob's own")),
    ]
    results = {r.command_id: r for r in s.ProcessTaskStream(iter(commands), metadata=people.bob)}
    for command_id in ("get", "update", "delete"):
        assert not results[command_id].success
        assert results[command_id].code == grpc.StatusCode.NOT_FOUND.value[0], command_id
    assert results["create"].success and results["create"].task.created_by == people.bob_id
    assert s.GetTask(pb.GetTaskRequest(id=task.id), metadata=people.alice) == task
