"""`taskctl project …` and `--project/--parent` on create, list and watch, with two users' tokens:
what one shares through a project the other sees, and stops seeing once removed; the trash."""

from __future__ import annotations

import json
import uuid
from typing import Any

from taskservice.api import task_service_pb2 as pb
from tests.servers import ServerProcess, bearer
from tests.test_taskctl import json_lines, taskctl
from tests.watching import Watch


def run(server: ServerProcess, token: str, *args: str) -> list[dict[str, Any]]:
    result = taskctl(server, "--token", token, "-o", "json", *args)
    assert result.exit_code == 0, result.stderr
    return json_lines(result)


def test_sharing_a_project_from_the_command_line(jwt_server: ServerProcess) -> None:
    suffix = uuid.uuid4().hex[:6]
    alice, bob = f"alice-{suffix}", f"bob-{suffix}"
    alice_token, bob_token = jwt_server.token(alice), jwt_server.token(bob)

    (project,) = run(jwt_server, alice_token, "project", "create", "Garden", "-d", "weekend")
    assert project["members"] == [{"user": alice, "role": "PROJECT_ROLE_OWNER"}]
    (parent,) = run(jwt_server, alice_token, "create", "Plant trees", "--project", project["id"])
    (child,) = run(
        jwt_server, alice_token, "create", "Buy seeds", "--project", project["id"], "--parent", parent["id"]
    )
    assert (child["projectId"], child["parentId"]) == (project["id"], parent["id"])

    assert run(jwt_server, bob_token, "list", "--project", project["id"]) == []
    (shared,) = run(jwt_server, alice_token, "project", "add-member", project["id"], bob, "--role", "viewer")
    assert {"user": bob, "role": "PROJECT_ROLE_VIEWER"} in shared["members"]
    assert [p["id"] for p in run(jwt_server, bob_token, "project", "list")] == [project["id"]]
    listed = run(jwt_server, bob_token, "list", "--project", project["id"])
    assert [t["id"] for t in listed] == [parent["id"], child["id"]]
    assert [t["id"] for t in run(jwt_server, bob_token, "list", "--parent", parent["id"])] == [child["id"]]

    table = taskctl(jwt_server, "--token", bob_token, "project", "show", project["id"])
    assert table.exit_code == 0 and f"member {bob}" in table.stdout and "viewer" in table.stdout
    denied = taskctl(jwt_server, "--token", bob_token, "create", "Mine?", "--project", project["id"])
    assert denied.exit_code != 0 and "PERMISSION_DENIED" in denied.stderr

    watch = Watch(
        jwt_server.stub(), pb.WatchTasksRequest(project_ids=[project["id"]]), metadata=bearer(bob_token)
    )
    try:
        run(jwt_server, alice_token, "project", "remove-member", project["id"], bob)
        gone = watch.take(2)
        assert {(e.event_type, e.task.id) for e in gone} == {
            (pb.EVENT_TYPE_DELETED, parent["id"]),
            (pb.EVENT_TYPE_DELETED, child["id"]),
        }
    finally:
        watch.cancel()
    assert run(jwt_server, bob_token, "project", "list") == []
    missing = taskctl(jwt_server, "--token", bob_token, "project", "show", project["id"])
    assert missing.exit_code != 0 and "NOT_FOUND" in missing.stderr


def test_trash_from_the_command_line(jwt_server: ServerProcess) -> None:
    token = jwt_server.token(f"carol-{uuid.uuid4().hex[:6]}")
    (task,) = run(jwt_server, token, "create", "Old idea")
    assert taskctl(jwt_server, "--token", token, "delete", task["id"]).exit_code == 0
    assert taskctl(jwt_server, "--token", token, "get", task["id"]).exit_code != 0
    (trashed,) = run(jwt_server, token, "get", "--deleted", task["id"])
    assert "deleteTime" in trashed
    assert [t["id"] for t in run(jwt_server, token, "list", "--trash")] == [task["id"]]
    (restored,) = run(jwt_server, token, "undelete", task["id"])
    assert "deleteTime" not in restored and json.dumps(restored)
    assert [t["id"] for t in run(jwt_server, token, "list")] == [task["id"]]
