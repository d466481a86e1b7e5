"""Task files for `taskctl import` and `export`: CSV with a header row, or JSON Lines.

Export writes every field of a task; import reads the fields a client may set (title, description,
status, priority, labels, assigned_to, due_date, metadata, request_id) and skips the ones the server
assigns (id, created_by, created_at, updated_at, version), so an export imports cleanly elsewhere.
In CSV, labels are joined with `;` (a JSON array when a label itself contains `;`) and metadata is
a JSON object.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from google.protobuf import json_format

from taskservice.api import task_service_pb2 as pb
from taskservice.cli.render import to_json
from taskservice.client.requests import (
    priority_name,
    priority_value,
    status_name,
    status_value,
    timestamp,
)

CSV_COLUMNS = (
    "id",
    "title",
    "description",
    "status",
    "priority",
    "labels",
    "assigned_to",
    "due_date",
    "metadata",
    "created_by",
    "created_at",
    "updated_at",
    "version",
)
_SERVER_ASSIGNED = frozenset({"id", "created_by", "created_at", "updated_at", "version"})
_CSV_IMPORTED = frozenset(CSV_COLUMNS) - _SERVER_ASSIGNED | {"request_id"}


class FileFormatError(Exception):
    """The file as a whole cannot be read (unknown columns, no title column)."""


@dataclass(frozen=True)
class Row:
    """One task to create, from `line` of the file; `status` is applied after creation (0: leave)."""

    line: int
    request: pb.CreateTaskRequest
    status: int = 0


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


def detect_format(name: str, first_line: str) -> str:
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if first_line.lstrip().startswith("{") else "csv"


def read_rows(stream: Iterable[str], fmt: str) -> Iterator[Row | RowError]:
    return _read_csv(stream) if fmt == "csv" else _read_jsonl(stream)


def _read_csv(stream: Iterable[str]) -> Iterator[Row | RowError]:
    reader = csv.DictReader(stream)
    columns = [c.strip() for c in reader.fieldnames or ()]
    unknown = [c for c in columns if c not in _CSV_IMPORTED | _SERVER_ASSIGNED]
    if unknown:
        raise FileFormatError(
            f"unknown column(s) {', '.join(unknown)}; known: {', '.join(CSV_COLUMNS)}, request_id"
        )
    if "title" not in columns:
        raise FileFormatError("the header row has no 'title' column")
    reader.fieldnames = columns
    for record in reader:
        line = reader.line_num  # where the record ends: its line, unless a quoted cell spans lines
        try:
            yield _csv_row(line, record)
        except ValueError as error:
            yield RowError(line, str(error))


def _csv_row(line: int, record: dict[str, Any]) -> Row:
    if None in record:
        raise ValueError("more cells than columns in the header")
    cell = {key: (value or "").strip() for key, value in record.items() if key in _CSV_IMPORTED}
    request = pb.CreateTaskRequest(
        title=cell.get("title", ""),
        description=record.get("description") or "",
        labels=_labels_cell(cell.get("labels", "")),
        assigned_to=cell.get("assigned_to", ""),
        metadata=_metadata_cell(cell.get("metadata", "")),
        request_id=cell.get("request_id", ""),
    )
    if cell.get("priority"):
        request.priority = priority_value(cell["priority"])  # type: ignore[assignment]
    if cell.get("due_date"):
        request.due_date.CopyFrom(timestamp(cell["due_date"]))
    return Row(line, request, _status_to_apply(status_value(cell["status"]) if cell.get("status") else 0))


def _labels_cell(text: str) -> list[str]:
    if text.startswith("["):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("labels: not a JSON array") from None
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ValueError("labels: a JSON array must hold strings")
        return labels
    return [label.strip() for label in text.split(";") if label.strip()]


def _metadata_cell(text: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError('metadata: not a JSON object such as {"team": "web"}') from None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("metadata: must be a JSON object of strings")
    return metadata


def _read_jsonl(stream: Iterable[str]) -> Iterator[Row | RowError]:
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            yield _jsonl_row(line, text)
        except (ValueError, json_format.ParseError) as error:
            yield RowError(line, str(error).splitlines()[0])


def _jsonl_row(line: int, text: str) -> Row:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    request_id = obj.pop("requestId", None) or obj.pop("request_id", None) or ""
    task = json_format.ParseDict(obj, pb.Task())
    request = pb.CreateTaskRequest(
        title=task.title,
        description=task.description,
        priority=task.priority,
        labels=task.labels,
        assigned_to=task.assigned_to,
        metadata=task.metadata,
        request_id=str(request_id),
    )
    if task.HasField("due_date"):
        request.due_date.CopyFrom(task.due_date)
    return Row(line, request, _status_to_apply(task.status))


def _status_to_apply(status: int) -> int:
    return 0 if status in (pb.TASK_STATUS_UNSPECIFIED, pb.TASK_STATUS_TODO) else status


def write_tasks(tasks: Iterable[pb.Task], fmt: str, stream: IO[str]) -> int:
    """Write tasks as CSV (with a header) or JSON Lines; returns how many were written."""
    count = 0
    if fmt == "jsonl":
        for task in tasks:
            stream.write(to_json(task) + "\n")
            count += 1
        return count
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for task in tasks:
        writer.writerow(_csv_cells(task))
        count += 1
    return count


def _csv_cells(task: pb.Task) -> list[str]:
    labels = list(task.labels)
    if any(";" in label or label.startswith("[") for label in labels):
        labels_cell = json.dumps(labels, ensure_ascii=False)
    else:
        labels_cell = ";".join(labels)
    metadata = json.dumps(dict(sorted(task.metadata.items())), ensure_ascii=False) if task.metadata else ""
    return [
        task.id,
        task.title,
        task.description,
        status_name(task.status),
        priority_name(task.priority),
        labels_cell,
        task.assigned_to,
        task.due_date.ToJsonString() if task.HasField("due_date") else "",
        metadata,
        task.created_by,
        task.created_at.ToJsonString(),
        task.updated_at.ToJsonString(),
        str(task.version),
    ]
