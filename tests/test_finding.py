"""Finding work through the API, on both stores: filters, full-text search and its ranking, multi-key
orders paged while tasks change, and task history across updates and deletion."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.rpc import expect_code

TODO, DONE = pb.TASK_STATUS_TODO, pb.TASK_STATUS_DONE
LOW, MEDIUM, HIGH = pb.PRIORITY_LOW, pb.PRIORITY_MEDIUM, pb.PRIORITY_HIGH


def _create(stub: rpc.TaskServiceStub, tag: str, title: str, **fields: Any) -> pb.Task:
    task: pb.Task = stub.CreateTask(pb.CreateTaskRequest(title=title, labels=[tag], **fields))
    return task


def _all(stub: rpc.TaskServiceStub, tag: str, **request: Any) -> list[pb.Task]:
    found: list[pb.Task] = []
    token = ""
    while True:
        page = stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=2, page_token=token, **request))
        found += page.tasks
        token = page.next_page_token
        if not token:
            return found


def test_filter_language_selects_and_counts(stub: rpc.TaskServiceStub, tag: str) -> None:
    a = _create(stub, tag, "login page broken", priority=HIGH, metadata={"team": "web"})
    b = _create(stub, tag, "write docs", priority=LOW)
    stub.UpdateTask(pb.UpdateTaskRequest(id=b.id, status=DONE))
    c = _create(stub, tag, "fix login", priority=MEDIUM, assigned_to="ana")
    for text, expected in [
        ("status = TODO AND priority >= MEDIUM", {a.id, c.id}),
        ("status = DONE OR priority = HIGH", {a.id, b.id}),
        ('title:"login" -assigned_to:*', {a.id}),
        ("metadata.team:*", {a.id}),
        ("NOT status = TASK_STATUS_DONE AND created_at > now-1h", {a.id, c.id}),
    ]:
        found = _all(stub, tag, filter=text)
        assert {t.id for t in found} == expected, text
        assert stub.ListTasks(pb.ListTasksRequest(labels=[tag], filter=text)).total_count == len(expected)


def test_a_bad_filter_is_invalid_argument_naming_the_column(stub: rpc.TaskServiceStub) -> None:
    error = expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stub.ListTasks(pb.ListTasksRequest(filter="status = PURPLE")),
    )
    assert "at column 10" in error.details()
    expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: next(iter(stub.WatchTasks(pb.WatchTasksRequest(filter="(")))),
    )


def test_search_ranks_the_best_matches_first(stub: rpc.TaskServiceStub, tag: str) -> None:
    word = "zq" + tag[-8:]  # a word no other test's task holds
    weak = _create(stub, tag, "a task", description=f"mentions {word} once among many other words here")
    strong = _create(stub, tag, f"{word} {word}", description=f"{word} all about {word}")
    _create(stub, tag, "unrelated task")
    found = stub.ListTasks(pb.ListTasksRequest(query=word)).tasks
    assert [t.id for t in found] == [strong.id, weak.id]
    assert [
        t.id for t in stub.ListTasks(pb.ListTasksRequest(query=word[:-2] + "*", order_by="created_at")).tasks
    ] == [
        weak.id,
        strong.id,
    ]
    phrase = _create(stub, tag, f"release {word} notes")
    _create(stub, tag, f"notes {word} release")
    found = stub.ListTasks(pb.ListTasksRequest(query=f'"release {word}"', labels=[tag])).tasks
    assert [t.id for t in found] == [phrase.id]
    paged = _all(stub, tag, query=word)
    assert len(paged) == len({t.id for t in paged}) == 4


def test_search_follows_edits_in_the_same_transaction(stub: rpc.TaskServiceStub, tag: str) -> None:
    word = "yq" + tag[-8:]
    task = _create(stub, tag, f"old {word}")
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="renamed"))
    assert not stub.ListTasks(pb.ListTasksRequest(query=word)).tasks
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, description=f"now {word} here"))
    assert [t.id for t in stub.ListTasks(pb.ListTasksRequest(query=word)).tasks] == [task.id]
    stub.DeleteTask(pb.DeleteTaskRequest(id=task.id))
    assert not stub.ListTasks(pb.ListTasksRequest(query=word)).tasks


def test_multi_key_order_pages_while_tasks_change(stub: rpc.TaskServiceStub, tag: str) -> None:
    tasks = [_create(stub, tag, f"t{i}", priority=(LOW, MEDIUM, HIGH)[i % 3]) for i in range(9)]
    for i, task in enumerate(tasks):
        if i % 2:
            due = pb.UpdateTaskRequest(id=task.id)
            due.due_date.FromSeconds(1_900_000_000 + (i % 4) * 3600)
            stub.UpdateTask(due)
    order = "due_date desc, priority, created_at desc"
    seen, token, first = [], "", True
    while first or token:
        page = stub.ListTasks(
            pb.ListTasksRequest(labels=[tag], page_size=2, order_by=order, page_token=token)
        )
        seen += page.tasks
        token, first = page.next_page_token, False
        if len(seen) == 2:  # a task that sorts before the cursor, one after it, one leaving
            early = pb.CreateTaskRequest(title="sorts first", labels=[tag])
            early.due_date.FromSeconds(2_000_000_000)
            stub.CreateTask(early)
            _create(stub, tag, "sorts last")
            stub.DeleteTask(pb.DeleteTaskRequest(id=tasks[0].id))
    ids = [t.id for t in seen]
    assert len(ids) == len(set(ids)), "a task appeared twice"

    def key(t: pb.Task) -> tuple[int, int, int]:
        due = t.due_date.ToMicroseconds() if t.HasField("due_date") else 2**63 - 1
        return (-due, t.priority, -t.created_at.ToMicroseconds())

    assert [key(t) for t in seen] == sorted(key(t) for t in seen)
    final = {t.id for t in _all(stub, tag, order_by=order)}
    assert set(ids) - {tasks[0].id} <= final and tasks[0].id not in final


def test_a_token_belongs_to_its_order(stub: rpc.TaskServiceStub, tag: str) -> None:
    for i in range(3):
        _create(stub, tag, f"t{i}")
    page = stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=1, order_by="priority, created_at"))
    request = pb.ListTasksRequest(
        labels=[tag], page_size=1, order_by="priority desc", page_token=page.next_page_token
    )
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: stub.ListTasks(request))


def test_history_oldest_first_with_changed_paths(stub: rpc.TaskServiceStub, tag: str) -> None:
    task = _create(stub, tag, "draft")
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="final", priority=HIGH))
    stub.UpdateTask(
        pb.UpdateTaskRequest(id=task.id, status=DONE, update_mask=field_mask_pb2.FieldMask(paths=["status"]))
    )
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, metadata={"k": "v"}))
    events = stub.ListTaskEvents(pb.ListTaskEventsRequest(task_id=task.id)).events
    assert [e.event_type for e in events] == [pb.EVENT_TYPE_CREATED] + [pb.EVENT_TYPE_UPDATED] * 3
    assert [list(e.changed_paths.paths) for e in events] == [
        [],
        ["title", "priority"],
        ["status"],
        ["metadata"],
    ]
    assert [e.task.version for e in events] == [1, 2, 3, 4]
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)

    paged, token = [], ""
    while True:
        page = stub.ListTaskEvents(pb.ListTaskEventsRequest(task_id=task.id, page_size=3, page_token=token))
        paged += page.events
        token = page.next_page_token
        if not token:
            break
    assert [e.sequence for e in paged] == [e.sequence for e in events]

    other = _create(stub, tag, "other")
    foreign = pb.ListTaskEventsRequest(task_id=other.id, page_size=1)
    foreign.page_token = stub.ListTaskEvents(
        pb.ListTaskEventsRequest(task_id=task.id, page_size=1)
    ).next_page_token
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: stub.ListTaskEvents(foreign))

    # The trash keeps the task, so its history too: DELETED, then CREATED when it comes back.
    stub.DeleteTask(pb.DeleteTaskRequest(id=task.id))
    in_trash = stub.ListTaskEvents(pb.ListTaskEventsRequest(task_id=task.id)).events
    assert in_trash[-1].event_type == pb.EVENT_TYPE_DELETED and in_trash[-1].task.HasField("delete_time")
    stub.UndeleteTask(pb.UndeleteTaskRequest(id=task.id))
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="back"))
    after = stub.ListTaskEvents(pb.ListTaskEventsRequest(task_id=task.id)).events
    assert [e.event_type for e in after][-3:] == [
        pb.EVENT_TYPE_DELETED,
        pb.EVENT_TYPE_CREATED,
        pb.EVENT_TYPE_UPDATED,
    ]
    assert list(after[-1].changed_paths.paths) == ["title"]
    missing = pb.ListTaskEventsRequest(task_id="0190a8c2-0000-7000-8000-000000000000")
    expect_code(grpc.StatusCode.NOT_FOUND, lambda: stub.ListTaskEvents(missing))


def test_filtered_watch_sends_what_the_filter_matches(stub: rpc.TaskServiceStub, tag: str) -> None:
    from tests.watching import Watch

    watch = Watch(stub, pb.WatchTasksRequest(labels=[tag], filter="priority >= HIGH"))
    _create(stub, tag, "low", priority=LOW)
    high = _create(stub, tag, "high", priority=HIGH)
    assert watch.next().task.id == high.id
    updated = stub.UpdateTask(pb.UpdateTaskRequest(id=high.id, title="renamed"))
    event = watch.next()
    assert event.task.title == updated.title and list(event.changed_paths.paths) == ["title"]
    watch.cancel()
