"""Field limits and checks. Every check reports a google.rpc.BadRequest-style field violation.

All violations of a request are collected before raising, so a client learns everything that is
wrong with a request in one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import FieldViolation, InvalidArgument

# Timestamp range allowed by google.protobuf.Timestamp: 0001-01-01 to 9999-12-31.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799

STATUSES = frozenset(v for v in pb.TaskStatus.values() if v != pb.TASK_STATUS_UNSPECIFIED)
PRIORITIES = frozenset(v for v in pb.Priority.values() if v != pb.PRIORITY_UNSPECIFIED)


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits (docs/architecture.md, "Input limits"); the server sets bulk_items_max from
    --max-bulk-items."""

    title_max: int = 200
    description_max: int = 20_000
    labels_max: int = 50
    label_max: int = 64
    metadata_max: int = 64
    metadata_key_max: int = 128
    metadata_value_max: int = 2048
    assigned_to_max: int = 256
    id_max: int = 128
    request_id_max: int = 128
    page_size_default: int = 50
    page_size_max: int = 1000
    filter_values_max: int = 100
    bulk_items_max: int = 100_000
    subtask_depth_max: int = 8  # ancestors a task may have: a top-level task has none


class Checker:
    """Collects field violations for one request."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)

    def text(self, field: str, value: str, *, max_len: int, min_len: int = 0) -> None:
        if "\x00" in value:
            self.fail(field, "must not contain NUL characters")
        elif len(value) > max_len:
            self.fail(field, f"must be at most {max_len} characters (got {len(value)})")
        elif len(value) < min_len:
            self.fail(
                field, "must not be empty" if min_len == 1 else f"must be at least {min_len} characters"
            )

    def title(self, field: str, value: str) -> str:
        trimmed = value.strip()
        if not trimmed and "\x00" not in value:
            self.fail(field, "must not be empty")
        else:
            self.text(field, trimmed, max_len=self.limits.title_max)
        return trimmed

    def labels(self, field: str, values: Iterable[str]) -> list[str]:
        labels = list(dict.fromkeys(values))  # duplicates collapse, order kept
        if len(labels) > self.limits.labels_max:
            self.fail(field, f"at most {self.limits.labels_max} labels (got {len(labels)})")
        most = self.limits.label_max
        for i, label in enumerate(labels):
            if not 0 < len(label) <= most or "\x00" in label:  # the field name is built only for a violation
                self.text(f"{field}[{i}]", label, max_len=most, min_len=1)
        return labels

    def metadata(self, field: str, values: Mapping[str, str]) -> None:
        if len(values) > self.limits.metadata_max:
            self.fail(field, f"at most {self.limits.metadata_max} entries (got {len(values)})")
        for key, value in values.items():
            self.text(f"{field}[{key[:32]!r}]", key, max_len=self.limits.metadata_key_max, min_len=1)
            self.text(f"{field}[{key[:32]!r}]", value, max_len=self.limits.metadata_value_max)

    def timestamp(self, field: str, value: Timestamp) -> None:
        if not (_MIN_SECONDS <= value.seconds <= _MAX_SECONDS) or not (0 <= value.nanos < 1_000_000_000):
            self.fail(field, "must be a valid timestamp between years 1 and 9999")

    def enum(self, field: str, value: int, allowed: frozenset[int], name: str) -> None:
        if value not in allowed:
            self.fail(field, f"{value} is not a valid {name}")

    def task_id(self, field: str, value: str) -> None:
        self.text(field, value, max_len=self.limits.id_max, min_len=1)


def new_task_fields(limits: Limits, req: pb.CreateTaskRequest, field_prefix: str = "") -> pb.Task:
    """Validate a CreateTaskRequest and return the client-settable part of the new task."""
    check = Checker(limits)
    p = field_prefix
    task = pb.Task(
        title=check.title(f"{p}title", req.title),
        description=req.description,
        priority=req.priority or pb.PRIORITY_MEDIUM,
        labels=check.labels(f"{p}labels", req.labels),
        assigned_to=req.assigned_to,
    )
    if req.metadata:  # copying an empty map costs more than the rest of the task
        task.metadata.update(req.metadata)
    check.text(f"{p}description", req.description, max_len=limits.description_max)
    check.enum(f"{p}priority", task.priority, PRIORITIES, "Priority")
    check.text(f"{p}assigned_to", req.assigned_to, max_len=limits.assigned_to_max)
    if req.metadata:  # an empty map's checks (its items view) cost time and find nothing
        check.metadata(f"{p}metadata", req.metadata)
    if req.request_id:
        check.text(f"{p}request_id", req.request_id, max_len=limits.request_id_max)
    if req.project_id:
        check.text(f"{p}project_id", req.project_id, max_len=limits.id_max)
        task.project_id = req.project_id
    if req.parent_id:
        check.text(f"{p}parent_id", req.parent_id, max_len=limits.id_max)
        task.parent_id = req.parent_id
    if req.HasField("due_date"):
        check.timestamp(f"{p}due_date", req.due_date)
        task.due_date.CopyFrom(req.due_date)
    check.raise_if_any()
    return task
