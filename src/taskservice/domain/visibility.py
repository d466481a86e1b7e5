"""Who may see and change a task: the one visibility rule, and the role checks built on it.

A personal task (no project) is seen by its creator and its assignee. A project's task is seen by
the project's members (any role) and by its assignee; its creator alone, once out of the project,
no longer sees it. Admins see everything. `Sight.sees` is that rule on one task; `store/sql.py`
compiles the same rule to SQL for lists, counts and snapshots (a property test checks both agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb

VIEWER = pb.PROJECT_ROLE_VIEWER
EDITOR = pb.PROJECT_ROLE_EDITOR
OWNER = pb.PROJECT_ROLE_OWNER
ROLES = frozenset((VIEWER, EDITOR, OWNER))


@dataclass(frozen=True, slots=True)
class Sight:
    """The tasks a user (not an admin) may see: hashable, so a filter holding it keys a cache."""

    user: str
    projects: frozenset[str] = frozenset()

    def sees(self, task: pb.Task) -> bool:
        if task.assigned_to == self.user:
            return True
        if task.project_id:
            return task.project_id in self.projects
        return task.created_by == self.user


@dataclass(frozen=True, slots=True)
class Permissions:
    """A caller with their project roles (project id → ProjectRole), as one request sees them."""

    caller: Caller
    roles: Mapping[str, int] = field(default_factory=dict)

    @property
    def sight(self) -> Sight | None:
        """None for an admin (every task), else the caller's Sight."""
        if self.caller.is_admin:
            return None
        return Sight(self.caller.user_id, frozenset(self.roles))

    def role(self, project_id: str) -> int:
        return self.roles.get(project_id, pb.PROJECT_ROLE_UNSPECIFIED)

    def can_see(self, task: pb.Task) -> bool:
        sight = self.sight
        return sight is None or sight.sees(task)

    def can_edit_project_tasks(self, project_id: str) -> bool:
        """May create, change and delete tasks of `project_id` ("" is the caller's personal space)."""
        return self.caller.is_admin or not project_id or self.role(project_id) >= EDITOR

    def can_update(self, task: pb.Task) -> bool:
        """Assignees may update; in a project, editors; a personal task, its creator."""
        return self.caller.is_admin or task.assigned_to == self.caller.user_id or self._manages(task)

    def can_delete(self, task: pb.Task) -> bool:
        """As update, but an assignee alone may not delete."""
        return self.caller.is_admin or self._manages(task)

    def _manages(self, task: pb.Task) -> bool:
        if task.project_id:
            return self.role(task.project_id) >= EDITOR
        return task.created_by == self.caller.user_id


def role_of(project: pb.Project | None, user: str) -> int:
    """The user's role in `project` (UNSPECIFIED when not a member or no project)."""
    if project is not None:
        for member in project.members:
            if member.user == user:
                return member.role
    return pb.PROJECT_ROLE_UNSPECIFIED
