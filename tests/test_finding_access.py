"""Access rules on task history and on filtered watches: the same as GetTask and unfiltered watches."""

from __future__ import annotations

import uuid

import grpc

from taskservice.api import task_service_pb2 as pb
from tests.rpc import expect_code
from tests.servers import ServerProcess, bearer
from tests.watching import Watch


def test_history_follows_get_task_access(jwt_server: ServerProcess) -> None:
    suffix = uuid.uuid4().hex[:8]
    alice, bob, carol = (bearer(jwt_server.token(f"{name}-{suffix}")) for name in ("alice", "bob", "carol"))
    admin = bearer(jwt_server.token(f"root-{suffix}", admin=True))
    s = jwt_server.stub()
    task = s.CreateTask(pb.CreateTaskRequest(title="private"), metadata=alice)
    s.UpdateTask(pb.UpdateTaskRequest(id=task.id, assigned_to=f"bob-{suffix}"), metadata=alice)
    request = pb.ListTaskEventsRequest(task_id=task.id)
    assert len(s.ListTaskEvents(request, metadata=alice).events) == 2
    assert len(s.ListTaskEvents(request, metadata=bob).events) == 2  # the assignee reads it
    assert len(s.ListTaskEvents(request, metadata=admin).events) == 2
    missing = pb.ListTaskEventsRequest(task_id=str(uuid.uuid4()))
    for call in (request, missing):  # a stranger cannot tell a hidden task from a missing one

        def read(call: pb.ListTaskEventsRequest = call) -> pb.ListTaskEventsResponse:
            answer: pb.ListTaskEventsResponse = s.ListTaskEvents(call, metadata=carol)
            return answer

        assert call.task_id in expect_code(grpc.StatusCode.NOT_FOUND, read).details()


def test_a_filtered_watch_never_shows_another_users_task(jwt_server: ServerProcess) -> None:
    suffix = uuid.uuid4().hex[:8]
    alice, bob = (bearer(jwt_server.token(f"{name}-{suffix}")) for name in ("alice", "bob"))
    s = jwt_server.stub()
    tag = f"w-{suffix}"
    request = pb.WatchTasksRequest(filter=f'labels:"{tag}" AND priority >= HIGH', include_initial=True)
    s.CreateTask(
        pb.CreateTaskRequest(title="alice's", labels=[tag], priority=pb.PRIORITY_HIGH), metadata=alice
    )
    watch = Watch(s, request, metadata=bob)
    assert watch.quiet(0.5)  # alice's task is not in bob's initial state
    s.CreateTask(
        pb.CreateTaskRequest(title="alice's live", labels=[tag], priority=pb.PRIORITY_HIGH), metadata=alice
    )
    low = s.CreateTask(pb.CreateTaskRequest(title="bob's low", labels=[tag]), metadata=bob)
    mine = s.CreateTask(
        pb.CreateTaskRequest(title="bob's", labels=[tag], priority=pb.PRIORITY_HIGH), metadata=bob
    )
    assert watch.next().task.id == mine.id
    s.UpdateTask(pb.UpdateTaskRequest(id=low.id, priority=pb.PRIORITY_CRITICAL), metadata=bob)
    assert watch.next().task.id == low.id  # entered the filter
    assert watch.quiet(0.3)
    watch.cancel()


def test_project_members_read_a_project_tasks_history_and_others_do_not(jwt_server: ServerProcess) -> None:
    suffix = uuid.uuid4().hex[:8]
    alice, bob, carol = (bearer(jwt_server.token(f"{name}-{suffix}")) for name in ("alice", "bob", "carol"))
    s = jwt_server.stub()
    viewer = pb.ProjectMember(user=f"bob-{suffix}", role=pb.PROJECT_ROLE_VIEWER)
    project = s.CreateProject(pb.CreateProjectRequest(title="shared", members=[viewer]), metadata=alice)
    task = s.CreateTask(pb.CreateTaskRequest(title="in the project", project_id=project.id), metadata=alice)
    s.UpdateTask(pb.UpdateTaskRequest(id=task.id, priority=pb.PRIORITY_HIGH), metadata=alice)
    request = pb.ListTaskEventsRequest(task_id=task.id)
    events = s.ListTaskEvents(request, metadata=bob).events
    assert [list(e.changed_paths.paths) for e in events] == [[], ["priority"]]

    def as_carol() -> pb.ListTaskEventsResponse:
        answer: pb.ListTaskEventsResponse = s.ListTaskEvents(request, metadata=carol)
        return answer

    expect_code(grpc.StatusCode.NOT_FOUND, as_carol)
    s.SetProjectMember(
        pb.SetProjectMemberRequest(project_id=project.id, user=f"bob-{suffix}"), metadata=alice
    )

    def as_bob() -> pb.ListTaskEventsResponse:
        answer: pb.ListTaskEventsResponse = s.ListTaskEvents(request, metadata=bob)
        return answer

    expect_code(grpc.StatusCode.NOT_FOUND, as_bob)  # removed from the project: no longer
