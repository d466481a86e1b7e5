"""An initial snapshot sent in parts stays exact while tasks and memberships change under it.

The watcher applies what it receives to a copy (CREATED and UPDATED put the task, DELETED removes
it). Whatever changes while the parts are read (tasks created, updated and deleted on either side
of the part being read, the watcher added to or removed from a project), the copy equals what the
watcher may see once the changes stop; sequences never go down; no task arrives twice as CREATED
and no change arrives for a task the copy does not hold.
The watcher's last task (the marker) is created once every change is made; the copy is compared
when nothing more arrives after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain import service as service_module
from taskservice.domain.paging import SnapshotPart
from tests.unit.conftest import InProcess, People

# Small parts, so a few dozen tasks make several of them, and a byte bound some parts reach.
_PART = SnapshotPart("", 7, 1500)


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(service_module, "FIRST_PART", _PART)
    yield


@dataclass(frozen=True)
class Op:
    at: int  # performed once the watcher has received this many events
    kind: str  # create | update | delete | project-create | project-update | project-delete | join | leave
    pick: int  # which task, among those of its kind


_OPS = st.lists(
    st.builds(
        Op,
        st.integers(0, 60),
        st.sampled_from(
            [
                "create",
                "update",
                "delete",
                "project-create",
                "project-update",
                "project-delete",
                "join",
                "leave",
            ]
        ),
        st.integers(0, 1000),
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(own=st.integers(0, 30), shared=st.integers(0, 20), member=st.booleans(), ops=_OPS, big=st.booleans())
def test_a_snapshot_in_parts_stays_exact_under_changes(
    app: InProcess, people: People, own: int, shared: int, member: bool, ops: list[Op], big: bool
) -> None:
    app.run(_scenario(app, people, own, shared, member, sorted(ops, key=lambda op: op.at), big))


async def _scenario(
    app: InProcess, people: People, own: int, shared: int, member: bool, ops: list[Op], big: bool
) -> None:
    service, alice, bob = app.service, people.alice, people.bob
    tag = f"{people.tag}-{own}-{shared}-{len(ops)}-{member}-{big}"
    description = "x" * (400 if big else 0)  # a few of these fill a part's byte bound
    project = await service.projects.create(alice, pb.CreateProjectRequest(title="shared " + tag))
    if member:
        project = await _set_member(app, alice, project, bob.user_id, pb.PROJECT_ROLE_EDITOR)
    mine: list[str] = []
    theirs: list[str] = []

    async def create(caller: Caller, ids: list[str], project_id: str = "") -> None:
        request = pb.CreateTaskRequest(
            title="t", description=description, labels=[tag], project_id=project_id
        )
        ids.append((await service.create(caller, request)).id)

    for _ in range(own):
        await create(bob, mine)
    for _ in range(shared):
        await create(alice, theirs, project.id)

    async def perform(op: Op) -> None:
        nonlocal project
        caller, ids = (alice, theirs) if op.kind.startswith("project") else (bob, mine)
        kind = op.kind.removeprefix("project-")
        if kind == "create":
            await create(caller, ids, project.id if caller is alice else "")
        elif kind == "update" and ids:
            task_id = ids[op.pick % len(ids)]
            await service.update(caller, pb.UpdateTaskRequest(id=task_id, title=f"t{op.pick}"))
        elif kind == "delete" and ids:
            await service.delete(caller, pb.DeleteTaskRequest(id=ids.pop(op.pick % len(ids))))
        elif kind in ("join", "leave"):
            role = pb.PROJECT_ROLE_VIEWER if kind == "join" else pb.PROJECT_ROLE_UNSPECIFIED
            project = await _set_member(app, alice, project, bob.user_id, role)

    copy: dict[str, pb.Task] = {}
    last = 0
    received = 0
    pending = list(ops)
    marker = ""

    async def due(quiet: bool = False) -> None:
        """The operations due after `received` events (the next one at any rate when the stream is
        quiet: it may wait for more events than will come); the marker task once none remain."""
        nonlocal marker
        if quiet and pending:
            await perform(pending.pop(0))
        while pending and pending[0].at <= received:
            await perform(pending.pop(0))
        if not pending and not marker:
            ids: list[str] = []
            await create(bob, ids)
            marker = ids[0]

    stream = cast(
        AsyncGenerator[pb.TaskEvent | bytes, None],
        service.watch(bob, pb.WatchTasksRequest(labels=[tag], include_initial=True)),
    )
    await due()
    coming: asyncio.Future[pb.TaskEvent | bytes] | None = None
    try:
        async with asyncio.timeout(30):
            while True:
                coming = coming or asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({coming}, timeout=0.3)
                if not done:
                    if marker in copy:
                        break  # the rest of the snapshot, if any, would follow without a pause
                    await due(quiet=True)
                    continue
                item, coming = coming.result(), None
                event = item if isinstance(item, pb.TaskEvent) else pb.TaskEvent.FromString(item)
                assert event.sequence >= last, "sequences went down"
                last = event.sequence
                task_id = event.task.id
                if event.event_type == pb.EVENT_TYPE_CREATED:
                    assert task_id not in copy, "a task arrived twice as CREATED"
                    copy[task_id] = event.task
                elif event.event_type == pb.EVENT_TYPE_UPDATED:
                    assert task_id in copy, "an update for a task the copy does not hold"
                    copy[task_id] = event.task
                else:
                    assert copy.pop(task_id, None) is not None, "a deletion of a task the copy does not hold"
                received += 1
                await due()
    finally:
        if coming is not None:
            coming.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await coming
        await stream.aclose()
    assert copy == {task.id: task for task in await _visible(app, bob, tag)}


async def _set_member(app: InProcess, owner: Caller, project: pb.Project, user: str, role: int) -> pb.Project:
    request = pb.SetProjectMemberRequest(project_id=project.id, user=user, role=role)  # type: ignore[arg-type]
    return await app.service.projects.set_member(owner, request)


async def _visible(app: InProcess, caller: Caller, tag: str) -> list[pb.Task]:
    tasks: list[pb.Task] = []
    token = ""
    while True:
        page = await app.service.list(
            caller, pb.ListTasksRequest(labels=[tag], page_size=100, page_token=token)
        )
        tasks.extend(page.tasks)
        if not page.next_page_token:
            return tasks
        token = page.next_page_token
