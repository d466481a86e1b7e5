"""The Python clients' project, member and trash methods, sync and async, against a real server
that checks tokens: the same calls taskctl and programs make."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.client import AsyncTaskClient, TaskClient, TaskServiceError
from tests.servers import ServerProcess


def test_sync_client_shares_a_project_and_uses_the_trash(jwt_server: ServerProcess) -> None:
    suffix = uuid.uuid4().hex[:6]
    ann, ben = f"ann-{suffix}", f"ben-{suffix}"
    with (
        TaskClient(jwt_server.grpc_addr, token=jwt_server.token(ann)) as owner,
        TaskClient(jwt_server.grpc_addr, token=jwt_server.token(ben)) as member,
    ):
        project = owner.create_project("Kitchen", description="renovation", members={ben: "viewer"})
        assert {(m.user, m.role) for m in project.members} == {
            (ann, pb.PROJECT_ROLE_OWNER),
            (ben, pb.PROJECT_ROLE_VIEWER),
        }
        parent = owner.create("Tiles", project_id=project.id)
        child = owner.create("Grout", project_id=project.id, parent_id=parent.id)
        assert [t.id for t in member.list(project_id=project.id).tasks] == [parent.id, child.id]
        assert [t.id for t in member.list(parent_id=parent.id).tasks] == [child.id]
        with pytest.raises(TaskServiceError) as denied:
            member.update(child.id, title="mine")
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        promoted = owner.set_member(project.id, ben, "editor")
        assert {(m.user, m.role) for m in promoted.members} >= {(ben, pb.PROJECT_ROLE_EDITOR)}
        assert member.update(child.id, title="Grout (white)").version == child.version + 1
        renamed = owner.update_project(project.id, title="Kitchen 2026")
        assert (renamed.title, renamed.description) == ("Kitchen 2026", "renovation")

        member.delete(child.id)
        assert member.get(child.id, show_deleted=True).HasField("delete_time")
        assert [t.id for t in owner.list(project_id=project.id, show_deleted=True).tasks] == [child.id]
        assert not member.undelete(child.id).HasField("delete_time")

        owner.set_member(project.id, ben, None)
        with pytest.raises(TaskServiceError) as gone:
            member.get_project(project.id)
        assert gone.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(TaskServiceError) as holding:
            owner.delete_project(project.id)
        assert holding.value.code == grpc.StatusCode.FAILED_PRECONDITION
        owner.delete_project(project.id, force=True)
        assert project.id not in {p.id for p in owner.list_projects().projects}


def test_async_client_has_the_same_methods(jwt_server: ServerProcess) -> None:
    user = f"cat-{uuid.uuid4().hex[:6]}"

    async def scenario() -> None:
        async with AsyncTaskClient(jwt_server.grpc_addr, token=jwt_server.token(user)) as client:
            project = await client.create_project("Shed", request_id="shed-1")
            again = await client.create_project("Shed", request_id="shed-1")
            assert again.id == project.id  # a repeated request id makes no second project
            assert [p.id for p in (await client.list_projects()).projects] == [project.id]
            task = await client.create("Paint", project_id=project.id)
            await client.delete(task.id)
            restored = await client.undelete(task.id)
            assert (await client.get(restored.id)).version == task.version + 1
            await client.set_member(project.id, "dan", "viewer")
            assert len((await client.get_project(project.id)).members) == 2
            await client.delete_project(project.id, force=True)

    asyncio.run(asyncio.wait_for(scenario(), 60))
