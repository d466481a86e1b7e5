"""Projects: shared containers of tasks with members and roles (CONTRACT §5.1).

Project rules are checked against the project as the store's transaction reads it, so a change and
the role that allowed it are atomic. Task rules need the caller's roles in every project; those come
from `Memberships`, a per-process cache that project events (in the same log as task events) keep
current on every replica (docs/decisions/0001-project-membership-events.md).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    VersionConflict,
)
from taskservice.domain.paging import PageTokens
from taskservice.domain.validation import Checker, Limits
from taskservice.domain.values import new_task_id, now_us, timestamp_from_us
from taskservice.domain.visibility import OWNER, ROLES, role_of
from taskservice.store.base import StoredEvent, TaskStore

PROJECT_PATHS = ("title", "description")
MEMBERS_MAX = 1000
_PROJECT_IDS = uuid.UUID("5b0c8a36-1f0e-4a51-9a57-7b1f3c0d2e10")  # the uuid5 namespace of request ids


class Memberships:
    """Each user's roles by project id, read from the store on first use and dropped when a project
    event names the user (as a member before or after), so the next request reads them again."""

    def __init__(self, store: TaskStore, capacity: int = 10_000) -> None:
        self._store = store
        self._capacity = capacity
        self._roles: OrderedDict[str, dict[str, int]] = OrderedDict()
        self._epoch = 0  # bumped by every project event: a read that overlapped one is not kept

    async def roles(self, user: str) -> dict[str, int]:
        """The user's roles now (as this process has seen the event log). Do not modify."""
        cached = self._roles.get(user)
        if cached is not None:
            return cached
        return await self.refresh(user)

    async def refresh(self, user: str) -> dict[str, int]:
        """The user's roles read from the store now, and kept. Another replica's change reaches this
        one's cache a moment after it commits; a request refused with cached roles asks here once
        more, so a member just added is let in at once."""
        epoch = self._epoch
        roles, _ = await self._store.memberships(user)
        if epoch == self._epoch:
            self._roles[user] = roles
            self._roles.move_to_end(user)
            if len(self._roles) > self._capacity:
                self._roles.popitem(last=False)
        return roles

    async def roles_at(self, user: str, sequence: int) -> dict[str, int]:
        """The user's roles as they were right after event `sequence`: the roles now, with the
        project events between that sequence and now undone (or, ahead of now, applied)."""
        roles, head = await self._store.memberships(user)
        if sequence == head:
            return roles
        low, high = sorted((sequence, head))
        events = await self._store.project_events(low, high)
        if sequence < head:
            for event in reversed(events):  # undo newest first: the oldest event's "before" wins
                _set_role(roles, event.project_id, role_of(event.project_before, user))
        else:
            for event in events:
                _set_role(roles, event.project_id, role_of(event.project, user))
        return roles

    def apply(self, events: list[StoredEvent]) -> None:
        """Store listener: forget the cached roles of everyone a project event names."""
        for event in events:
            if not event.is_project:
                continue
            self._epoch += 1
            for project in (event.project, event.project_before):
                if project is not None:
                    for member in project.members:
                        self._roles.pop(member.user, None)


def _set_role(roles: dict[str, int], project_id: str, role: int) -> None:
    if role:
        roles[project_id] = role
    else:
        roles.pop(project_id, None)


class ProjectService:
    """The project use cases: create, get, update, delete, list, and set or remove a member."""

    def __init__(
        self, store: TaskStore, memberships: Memberships, tokens: PageTokens, limits: Limits
    ) -> None:
        self._store = store
        self._memberships = memberships
        self._tokens = tokens
        self.limits = limits

    async def create(self, caller: Caller, request: pb.CreateProjectRequest) -> pb.Project:
        check = Checker(self.limits)
        project = pb.Project(title=check.title("title", request.title), created_by=caller.user_id)
        check.text("description", request.description, max_len=self.limits.description_max)
        project.description = request.description
        check.text("request_id", request.request_id, max_len=self.limits.request_id_max)
        members = self._check_members(check, request.members, caller.user_id)
        check.raise_if_any()
        project.members.add(user=caller.user_id, role=OWNER)
        project.members.extend(members)
        project.id = _project_id(caller, request.request_id) if request.request_id else new_task_id()
        project.version = 1
        project.created_at.CopyFrom(timestamp_from_us(now_us()))
        project.updated_at.CopyFrom(project.created_at)
        return await self._store.create_project(project, caller.user_id)

    async def get(self, caller: Caller, request: pb.GetProjectRequest) -> pb.Project:
        self._check_id(request.id)
        project = await self._store.get_project(request.id)
        if project is None or not (caller.is_admin or role_of(project, caller.user_id)):
            raise NotFound.project(request.id)
        return project

    async def update(self, caller: Caller, request: pb.UpdateProjectRequest) -> pb.Project:
        check = Checker(self.limits)
        check.task_id("id", request.id)
        if request.expected_version < 0:
            check.fail("expected_version", "must not be negative")
        if request.HasField("update_mask") and request.update_mask.paths:
            fields = list(dict.fromkeys(request.update_mask.paths))
            for path in fields:
                if path not in PROJECT_PATHS:
                    check.fail("update_mask", f"unknown path {path!r}; allowed: {', '.join(PROJECT_PATHS)}")
        else:
            fields = [name for name in PROJECT_PATHS if request.HasField(name)]  # type: ignore[arg-type]
        title = check.title("title", request.title) if "title" in fields else ""
        check.text("description", request.description, max_len=self.limits.description_max)
        check.raise_if_any()

        def change(current: pb.Project) -> pb.Project | None:
            self._require_role(caller, current, OWNER, "change")
            _require_version(current, request.expected_version)
            updated = pb.Project()
            updated.CopyFrom(current)
            if "title" in fields:
                updated.title = title
            if "description" in fields:
                updated.description = request.description
            return _bump(updated, current)

        return await self._store.update_project(request.id, change, caller.user_id)

    async def delete(self, caller: Caller, request: pb.DeleteProjectRequest) -> pb.Project:
        """Delete a project; returns it as it was. Refused while it holds tasks, unless `force`."""
        self._check_id(request.id)
        if request.expected_version < 0:
            raise InvalidArgument.field("expected_version", "must not be negative")

        def check(current: pb.Project, live_tasks: int) -> bool:
            self._require_role(caller, current, OWNER, "delete")
            _require_version(current, request.expected_version)
            if live_tasks and not request.force:
                raise FailedPrecondition(
                    f"project {current.id!r} still holds {live_tasks} tasks; move or delete them first, "
                    "or delete with force to delete them with it"
                )
            return request.force

        return await self._store.delete_project(request.id, check, caller.user_id)

    async def list(self, caller: Caller, request: pb.ListProjectsRequest) -> pb.ListProjectsResponse:
        if request.page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        size = min(request.page_size or self.limits.page_size_default, self.limits.page_size_max)
        member = None if caller.is_admin else caller.user_id
        scope = f"projects\x1e{caller.user_id}\x1e{caller.is_admin}"
        after = self._tokens.verify(scope, request.page_token) if request.page_token else ""
        projects = await self._store.list_projects(member, after, size + 1)
        response = pb.ListProjectsResponse(
            projects=projects[:size], total_count=await self._store.count_projects(member)
        )
        if len(projects) > size:
            response.next_page_token = self._tokens.sign(scope, projects[size - 1].id)
        return response

    async def set_member(self, caller: Caller, request: pb.SetProjectMemberRequest) -> pb.Project:
        """Add, change or (role UNSPECIFIED) remove a member. Owners manage members; anyone may
        leave; the last owner may neither leave nor be demoted."""
        check = Checker(self.limits)
        check.task_id("project_id", request.project_id)
        check.text("user", request.user, max_len=self.limits.assigned_to_max, min_len=1)
        if request.role and request.role not in ROLES:
            check.fail("role", f"{request.role} is not a valid ProjectRole")
        if request.expected_version < 0:
            check.fail("expected_version", "must not be negative")
        check.raise_if_any()

        def change(current: pb.Project) -> pb.Project | None:
            leaving = request.user == caller.user_id and not request.role
            if not (leaving and role_of(current, caller.user_id)):
                self._require_role(caller, current, OWNER, "manage the members of")
            _require_version(current, request.expected_version)
            before = role_of(current, request.user)
            if before == request.role:
                return None
            owners = sum(member.role == OWNER for member in current.members)
            if before == OWNER and owners == 1:
                raise FailedPrecondition(
                    f"{request.user!r} is the last owner of project {current.id!r}; make another member "
                    "an owner first"
                )
            updated = pb.Project()
            updated.CopyFrom(current)
            del updated.members[:]
            updated.members.extend(m for m in current.members if m.user != request.user)
            if request.role:
                updated.members.add(user=request.user, role=request.role)
            return _bump(updated, current)

        return await self._store.update_project(request.project_id, change, caller.user_id)

    # -- rules --------------------------------------------------------------------------------

    def _check_id(self, project_id: str, field: str = "id") -> None:
        check = Checker(self.limits)
        check.task_id(field, project_id)
        check.raise_if_any()

    def _check_members(
        self, check: Checker, members: Iterable[pb.ProjectMember], creator: str
    ) -> Sequence[pb.ProjectMember]:
        """The requested members other than the creator (who is always an owner)."""
        chosen: list[pb.ProjectMember] = []
        seen: set[str] = set()
        for i, member in enumerate(members):
            if i >= MEMBERS_MAX:
                check.fail("members", f"at most {MEMBERS_MAX} members")
                break
            check.text(f"members[{i}].user", member.user, max_len=self.limits.assigned_to_max, min_len=1)
            if member.role not in ROLES:
                check.fail(f"members[{i}].role", "must be VIEWER, EDITOR or OWNER")
            if member.user in seen:
                check.fail(f"members[{i}].user", f"{member.user!r} is listed twice")
            seen.add(member.user)
            if member.user != creator:
                chosen.append(member)
        return chosen

    @staticmethod
    def _require_role(caller: Caller, project: pb.Project, least: int, action: str) -> None:
        if caller.is_admin:
            return
        role = role_of(project, caller.user_id)
        if not role:
            raise NotFound.project(project.id)
        if role < least:
            raise PermissionDenied(f"only an owner of project {project.id!r} may {action} it")


def _require_version(project: pb.Project, expected: int) -> None:
    if expected and expected != project.version:
        raise VersionConflict(project.id, expected, project.version)


def _bump(updated: pb.Project, current: pb.Project) -> pb.Project | None:
    if updated == current:
        return None
    updated.version = current.version + 1
    updated.updated_at.CopyFrom(timestamp_from_us(now_us()))
    return updated


def _project_id(caller: Caller, request_id: str) -> str:
    """The id a CreateProject with a request id gets: the same for a repeat from the same caller, so
    the store finds the project the first attempt made instead of making another."""
    return str(uuid.uuid5(_PROJECT_IDS, f"{caller.user_id}\x1e{request_id}"))
