"""A team for the project tests: servers that require tokens (SQLite, or two PostgreSQL replicas behind
round-robin), one project, and a person in each role. Its fixtures are registered in conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskservice.access.auth import mint_token
from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.server.config import Settings
from tests.postgres import Database, require_postgres
from tests.servers import ReplicaSet, ServerProcess, bearer

Metadata = list[tuple[str, str]]
ROLES = ("owner", "editor", "viewer", "assignee", "stranger", "admin")


@dataclass
class Team:
    """Servers requiring tokens, all signed with one shared secret."""

    server: ServerProcess | ReplicaSet
    secret_file: Path

    def token(self, user: str, admin: bool = False) -> Metadata:
        return bearer(mint_token(Settings(jwt_secret_file=str(self.secret_file)), user, admin=admin))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def team(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    base = tmp_path_factory.mktemp("team")
    secret = base / "jwt.secret"
    secret.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    args = ("--auth", "jwt", "--jwt-secret-file", str(secret))
    if request.param == "sqlite":
        proc = ServerProcess(base / "sqlite", *args).start()
        yield Team(proc, secret)
        proc.stop()
        return
    require_postgres()
    database = Database().create()
    replicas = ReplicaSet([ServerProcess(base / f"replica{i}", *args, store=database.url) for i in range(2)])
    try:
        yield Team(replicas.start(), secret)
    finally:
        replicas.stop()
        database.drop()


@dataclass
class Crew:
    """One project and a person in each role; `who[role]` is that person's call metadata."""

    stub: rpc.TaskServiceStub
    project: pb.Project
    who: dict[str, Metadata]
    users: dict[str, str]

    def task(self, title: str = "shared work", **fields: Any) -> pb.Task:
        """A task in the project, created by the owner and assigned to the assignee."""
        request = pb.CreateTaskRequest(
            title=title, project_id=self.project.id, assigned_to=self.users["assignee"], **fields
        )
        task: pb.Task = self.stub.CreateTask(request, metadata=self.who["owner"])
        return task


@pytest.fixture
def crew(team: Team) -> Crew:
    suffix = uuid.uuid4().hex[:8]
    users = {role: f"{role}-{suffix}" for role in ROLES}
    who = {role: team.token(user, admin=role == "admin") for role, user in users.items()}
    stub = team.server.stub()
    project = stub.CreateProject(
        pb.CreateProjectRequest(
            title="Launch",
            members=[
                pb.ProjectMember(user=users["editor"], role=pb.PROJECT_ROLE_EDITOR),
                pb.ProjectMember(user=users["viewer"], role=pb.PROJECT_ROLE_VIEWER),
            ],
        ),
        metadata=who["owner"],
    )
    return Crew(stub, project, who, users)
