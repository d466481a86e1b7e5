"""Request builders shared by the sync and async clients: friendly Python values in, messages out.

Enum arguments accept the short names people type (`"high"`, `"in-progress"`), the protobuf names
(`"PRIORITY_HIGH"`) or the numbers; due dates accept ISO 8601 text, datetimes or Timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import TypeAlias

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from taskservice.api import task_service_pb2 as pb

StatusLike: TypeAlias = "str | int"
RoleLike: TypeAlias = "str | int"
PriorityLike: TypeAlias = "str | int"
DueLike: TypeAlias = "str | datetime | date | Timestamp | None"

STATUS_NAMES = ("todo", "in-progress", "done", "cancelled")
PRIORITY_NAMES = ("low", "medium", "high", "critical")
SORT_FIELDS = ("created_at", "updated_at", "priority", "due_date")
ROLE_NAMES = ("viewer", "editor", "owner")


def _enum_value(value: str | int, prefix: str, values: Mapping[str, int], kind: str) -> int:
    if isinstance(value, int):
        if value not in values.values() or value == 0:
            raise ValueError(f"{value} is not a valid {kind}")
        return value
    key = value.strip().upper().replace("-", "_").replace(" ", "_")
    if not key.startswith(prefix):
        key = prefix + key
    number = values.get(key, 0)
    if not number:
        names = ", ".join({"status": STATUS_NAMES, "priority": PRIORITY_NAMES}.get(kind, ROLE_NAMES))
        raise ValueError(f"{value!r} is not a valid {kind}; use one of {names}")
    return number


def status_value(value: StatusLike) -> int:
    """`"in-progress"`, `"TASK_STATUS_IN_PROGRESS"` or 2 → 2."""
    return _enum_value(value, "TASK_STATUS_", dict(pb.TaskStatus.items()), "status")


def priority_value(value: PriorityLike) -> int:
    """`"high"`, `"PRIORITY_HIGH"` or 3 → 3."""
    return _enum_value(value, "PRIORITY_", dict(pb.Priority.items()), "priority")


def role_value(value: RoleLike) -> int:
    """`"editor"`, `"PROJECT_ROLE_EDITOR"` or 2 → 2."""
    return _enum_value(value, "PROJECT_ROLE_", dict(pb.ProjectRole.items()), "role")


def role_name(value: int) -> str:
    names: dict[int, str] = {number: name for name, number in pb.ProjectRole.items()}
    return names.get(value, str(value)).removeprefix("PROJECT_ROLE_").lower()


def status_name(value: int) -> str:
    """2 → `"in-progress"` (the short name taskctl prints)."""
    names: dict[int, str] = {number: name for name, number in pb.TaskStatus.items()}
    return names.get(value, str(value)).removeprefix("TASK_STATUS_").lower().replace("_", "-")


def priority_name(value: int) -> str:
    names: dict[int, str] = {number: name for name, number in pb.Priority.items()}
    return names.get(value, str(value)).removeprefix("PRIORITY_").lower()


def timestamp(value: str | datetime | date | Timestamp) -> Timestamp:
    """A Timestamp from ISO 8601 text or a date/datetime; dates and naive times are taken as UTC."""
    if isinstance(value, Timestamp):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (
                datetime.fromisoformat(text.replace("Z", "+00:00"))
                if "T" in text
                else date.fromisoformat(text)
            )
        except ValueError:
            raise ValueError(
                f"{text!r} is not an ISO 8601 date such as 2026-12-31 or 2026-12-31T17:00:00Z"
            ) from None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def create_request(
    title: str,
    *,
    description: str = "",
    priority: PriorityLike | None = None,
    labels: Iterable[str] = (),
    assigned_to: str = "",
    due: DueLike = None,
    metadata: Mapping[str, str] | None = None,
    request_id: str = "",
    project_id: str = "",
    parent_id: str = "",
) -> pb.CreateTaskRequest:
    request = pb.CreateTaskRequest(
        title=title,
        description=description,
        labels=list(labels),
        assigned_to=assigned_to,
        metadata=dict(metadata or {}),
        request_id=request_id,
        project_id=project_id,
        parent_id=parent_id,
    )
    if priority is not None:
        request.priority = priority_value(priority)  # type: ignore[assignment]
    if due is not None:
        request.due_date.CopyFrom(timestamp(due))
    return request


def update_request(
    task_id: str,
    *,
    title: str | None = None,
    description: str | None = None,
    status: StatusLike | None = None,
    priority: PriorityLike | None = None,
    labels: Iterable[str] | None = None,
    assigned_to: str | None = None,
    due: DueLike | str = None,
    metadata: Mapping[str, str] | None = None,
    expected_version: int = 0,
    project_id: str | None = None,
    parent_id: str | None = None,
) -> pb.UpdateTaskRequest:
    """Only the arguments given change. `labels=[]` clears the labels and `due=""` clears the due
    date: both need an update mask, which then lists every field this update sets."""
    request = pb.UpdateTaskRequest(id=task_id, expected_version=expected_version)
    paths: list[str] = []
    if title is not None:
        request.title = title
        paths.append("title")
    if description is not None:
        request.description = description
        paths.append("description")
    if status is not None:
        request.status = status_value(status)  # type: ignore[assignment]
        paths.append("status")
    if priority is not None:
        request.priority = priority_value(priority)  # type: ignore[assignment]
        paths.append("priority")
    if labels is not None:
        request.labels[:] = list(labels)
        paths.append("labels")
    if assigned_to is not None:
        request.assigned_to = assigned_to
        paths.append("assigned_to")
    if due is not None:
        if due != "":
            request.due_date.CopyFrom(timestamp(due))
        paths.append("due_date")
    if metadata:
        request.metadata.update(metadata)
        paths.append("metadata")
    if project_id is not None:
        request.project_id = project_id
        paths.append("project_id")
    if parent_id is not None:
        request.parent_id = parent_id
        paths.append("parent_id")
    clears = (labels is not None and not request.labels) or (due == "")
    if clears:
        request.update_mask.CopyFrom(FieldMask(paths=paths))
    return request


def list_request(
    *,
    statuses: Iterable[StatusLike] = (),
    priorities: Iterable[PriorityLike] = (),
    labels: Iterable[str] = (),
    assigned_to: str = "",
    created_by: str = "",
    order_by: str = "",
    descending: bool = False,
    page_size: int = 0,
    page_token: str = "",
    project_id: str = "",
    parent_id: str = "",
    show_deleted: bool = False,
    filter: str = "",
    query: str = "",
) -> pb.ListTasksRequest:
    """`filter`: the AIP-160 filter language; `query`: full-text words; `order_by`: one field or
    an AIP-132 list such as "due_date desc, priority"."""
    return pb.ListTasksRequest(
        project_id=project_id,
        parent_id=parent_id,
        show_deleted=show_deleted,
        filter=filter,
        query=query,
        statuses=[status_value(s) for s in statuses],  # type: ignore[misc]
        priorities=[priority_value(p) for p in priorities],  # type: ignore[misc]
        labels=list(labels),
        assigned_to=assigned_to,
        created_by=created_by,
        order_by=order_by,
        descending=descending,
        page_size=page_size,
        page_token=page_token,
    )


def watch_request(
    *,
    task_ids: Iterable[str] = (),
    statuses: Iterable[StatusLike] = (),
    labels: Iterable[str] = (),
    include_initial: bool = False,
    after_sequence: int = 0,
    project_ids: Iterable[str] = (),
    filter: str = "",
) -> pb.WatchTasksRequest:
    return pb.WatchTasksRequest(
        project_ids=list(project_ids),
        filter=filter,
        task_ids=list(task_ids),
        statuses=[status_value(s) for s in statuses],  # type: ignore[misc]
        labels=list(labels),
        include_initial=include_initial,
        after_sequence=after_sequence,
    )


def members(values: Mapping[str, RoleLike]) -> list[pb.ProjectMember]:
    """{"bob": "editor"} → [ProjectMember(user="bob", role=EDITOR)]."""
    return [pb.ProjectMember(user=user, role=role_value(role)) for user, role in values.items()]  # type: ignore[arg-type]
