"""Watches across membership changes, while events flow: a watcher receives a project's events only
while a member, learns of the project's tasks as CREATED when added and as DELETED when removed
(at the membership change's sequence), and a replay from before applies each change at its place.
On SQLite and on two PostgreSQL replicas (the change made on one, the watch on another)."""

from __future__ import annotations

import queue
import threading
import time

from taskservice.api import task_service_pb2 as pb
from tests.teams import Crew
from tests.watching import Watch

CREATED, UPDATED, DELETED = pb.EVENT_TYPE_CREATED, pb.EVENT_TYPE_UPDATED, pb.EVENT_TYPE_DELETED


def drain(watch: Watch, quiet: float = 0.8) -> list[pb.TaskEvent]:
    """Every event until none comes for `quiet` seconds, in order."""
    events = []
    while True:
        try:
            events.append(watch.next(quiet))
        except queue.Empty:
            return events


def test_watch_follows_membership_changes_while_events_flow(crew: Crew) -> None:
    s, owner, project_id = crew.stub, crew.who["owner"], crew.project.id
    outsider = crew.users["stranger"]
    shared = crew.task("shared")
    theirs = s.CreateTask(
        pb.CreateTaskRequest(title="theirs", project_id=project_id, assigned_to=outsider), metadata=owner
    )
    everything = Watch(s, pb.WatchTasksRequest(project_ids=[project_id]), metadata=owner)
    watcher = Watch(s, pb.WatchTasksRequest(), metadata=crew.who["stranger"])
    stop = threading.Event()

    def keep_writing() -> None:
        n = 0
        while not stop.is_set() and n < 400:
            n += 1
            s.UpdateTask(pb.UpdateTaskRequest(id=shared.id, description=f"edit {n}"), metadata=owner)
            time.sleep(0.01)

    writer = threading.Thread(target=keep_writing)
    try:
        time.sleep(0.3)
        writer.start()
        time.sleep(0.3)
        s.UpdateTask(pb.UpdateTaskRequest(id=theirs.id, description="before"), metadata=owner)
        s.SetProjectMember(
            pb.SetProjectMemberRequest(project_id=project_id, user=outsider, role=pb.PROJECT_ROLE_VIEWER),
            metadata=owner,
        )
        time.sleep(0.4)
        s.SetProjectMember(pb.SetProjectMemberRequest(project_id=project_id, user=outsider), metadata=owner)
        time.sleep(0.3)
        stop.set()
        writer.join()
        s.UpdateTask(pb.UpdateTaskRequest(id=theirs.id, description="after"), metadata=owner)
        seen = drain(watcher)
        truth = drain(everything)
    finally:
        stop.set()
        watcher.cancel()
        everything.cancel()

    on_shared = [e for e in seen if e.task.id == shared.id]
    assert on_shared[0].event_type == CREATED and on_shared[-1].event_type == DELETED
    joined, left = on_shared[0].sequence, on_shared[-1].sequence
    assert joined < left
    assert [e.event_type for e in on_shared[1:-1]] == [UPDATED] * (len(on_shared) - 2)
    # Exactly the changes made while a member: none before, none after, no gap.
    updates = [e.sequence for e in truth if e.task.id == shared.id and e.event_type == UPDATED]
    assert any(seq < joined for seq in updates) and any(seq > left for seq in updates)
    assert [e.sequence for e in on_shared[1:-1]] == [seq for seq in updates if joined < seq < left]
    # Their own assigned task stays in sight throughout: no CREATED or DELETED for it.
    assert [(e.event_type, e.task.description) for e in seen if e.task.id == theirs.id] == [
        (UPDATED, "before"),
        (UPDATED, "after"),
    ]

    # A replay from before the watch applies each membership change at its place in the sequence.
    replay = Watch(
        s, pb.WatchTasksRequest(after_sequence=truth[0].sequence - 1), metadata=crew.who["stranger"]
    )
    try:
        replayed = drain(replay)
    finally:
        replay.cancel()
    assert [(e.event_type, e.task.id, e.sequence) for e in replayed] == [
        (e.event_type, e.task.id, e.sequence) for e in seen
    ]


def test_a_removed_member_watching_a_project_gets_deleted_for_each_task(crew: Crew) -> None:
    s, owner, project_id = crew.stub, crew.who["owner"], crew.project.id
    tasks = [crew.task(f"task {i}") for i in range(3)]
    watch = Watch(
        s, pb.WatchTasksRequest(project_ids=[project_id], include_initial=True), metadata=crew.who["viewer"]
    )
    try:
        assert {e.task.id for e in watch.take(3)} == {t.id for t in tasks}
        s.SetProjectMember(
            pb.SetProjectMemberRequest(project_id=project_id, user=crew.users["viewer"]), metadata=owner
        )
        gone = watch.take(3)
        assert {(e.event_type, e.task.id) for e in gone} == {(DELETED, t.id) for t in tasks}
        s.UpdateTask(pb.UpdateTaskRequest(id=tasks[0].id, title="secret"), metadata=owner)
        s.CreateTask(pb.CreateTaskRequest(title="new", project_id=project_id), metadata=owner)
        assert watch.quiet(0.8)
    finally:
        watch.cancel()
