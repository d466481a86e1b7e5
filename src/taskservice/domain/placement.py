"""Where a task may live: its project (the caller must edit there) and its parent (a subtask's parent
exists, is visible and live, is in the same project, is not the task or one of its subtasks, and
the nesting stays within `Limits.subtask_depth_max`)."""

from __future__ import annotations

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from taskservice.domain.paging import TaskFilter
from taskservice.domain.validation import Limits
from taskservice.domain.visibility import Permissions
from taskservice.store.base import TaskStore


class Placement:
    def __init__(self, store: TaskStore, limits: Limits) -> None:
        self._store = store
        self._limits = limits

    async def check_project(self, perms: Permissions, project_id: str, field: str = "project_id") -> None:
        """The caller may put tasks in `project_id` ("" is their personal space: always)."""
        if not project_id:
            return
        if perms.caller.is_admin:
            if await self._store.get_project(project_id) is None:
                raise NotFound.project(project_id)
            return
        role = perms.role(project_id)
        if not role:
            raise NotFound.project(project_id)
        if not perms.can_edit_project_tasks(project_id):
            raise PermissionDenied(
                f"{field}: a viewer of project {project_id!r} cannot add or move tasks there; an editor can"
            )

    async def check_parent(
        self, perms: Permissions, parent_id: str, project_id: str, task_id: str = "", field: str = "parent_id"
    ) -> None:
        """`parent_id` may be the parent of task `task_id` ("" for a new task) in `project_id`."""
        if not parent_id:
            return
        parent = await self._visible(perms, parent_id, field)
        if parent.project_id != project_id:
            raise InvalidArgument.field(field, "must be a task in the same project as the subtask")
        depth = 1  # the new task's own depth below its top-level ancestor, counted upwards
        ancestor = parent
        while ancestor.parent_id:
            if ancestor.id == task_id or ancestor.parent_id == task_id:
                raise InvalidArgument.field(field, "would make the task a subtask of itself (a cycle)")
            depth += 1
            if depth > self._limits.subtask_depth_max:
                break
            found = await self._store.get(ancestor.parent_id)
            if found is None:
                break  # a purged ancestor: the chain ends here
            ancestor = found
        if parent.id == task_id:
            raise InvalidArgument.field(field, "would make the task a subtask of itself (a cycle)")
        if task_id:
            depth += await self._height(task_id)
        if depth > self._limits.subtask_depth_max:
            raise InvalidArgument.field(
                field, f"subtasks nest at most {self._limits.subtask_depth_max} levels deep"
            )

    async def check_movable(self, task: pb.Task) -> None:
        """A task moves to another project without subtasks: they must stay in their parent's project."""
        children, _ = await self._store.snapshot(TaskFilter(parent_ids=(task.id,)))
        if children:
            raise FailedPrecondition(
                f"task {task.id!r} has {len(children)} subtasks; move or detach them before moving it "
                "to another project"
            )

    async def _visible(self, perms: Permissions, task_id: str, field: str) -> pb.Task:
        task = await self._store.get(task_id)
        if task is None or task.HasField("delete_time") or not perms.can_see(task):
            raise NotFound(f"{field}: task {task_id!r} not found")
        return task

    async def _height(self, task_id: str) -> int:
        """Levels of live subtasks below `task_id` (0: none), read a level at a time."""
        height = 0
        level: tuple[str, ...] = (task_id,)
        while level and height <= self._limits.subtask_depth_max:
            children, _ = await self._store.snapshot(TaskFilter(parent_ids=level))
            level = tuple(child.id for child in children)
            if level:
                height += 1
        return height
