"""Values of a task that every layer shares: identifiers, time and sort keys.

The service works on the generated protobuf messages directly (a Task is a `pb.Task`): they are the
wire format and the stored format, so no layer has to copy fields from one shape into another.
"""

from __future__ import annotations

import os
import threading
import time

from google.protobuf.timestamp_pb2 import Timestamp

from taskservice.api import task_service_pb2 as pb

Task = pb.Task

# Sort key used for tasks without a due date: they sort after every dated task (ascending).
NO_DUE_DATE = 2**63 - 1


def now_us() -> int:
    return time.time_ns() // 1000


def new_task_id() -> str:
    """A UUIDv7: time-ordered, so ids sort roughly by creation and index inserts stay local."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big"))  # unix_ts_ms
    raw += _random_bytes(10)
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7, then rand_a
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant, then rand_b
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _RandomPool:
    """os.urandom in 4 KiB draws: one system call per 409 ids rather than one per id (a bulk create
    makes thousands a second)."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        self._lock = threading.Lock()  # two threads must never be handed the same bytes

    def __call__(self, count: int) -> bytes:
        with self._lock:
            if self._at + count > len(self._pool):
                self._pool, self._at = os.urandom(4096), 0
            start, self._at = self._at, self._at + count
            return self._pool[start : self._at]


_random_bytes = _RandomPool()


def timestamp_from_us(us: int) -> Timestamp:
    return Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def us_from_timestamp(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def due_key(task: pb.Task) -> int:
    return us_from_timestamp(task.due_date) if task.HasField("due_date") else NO_DUE_DATE


# The fields an update can change, as FieldMask paths (version and updated_at change on every one).
CHANGEABLE_PATHS = (
    "title",
    "description",
    "status",
    "priority",
    "labels",
    "assigned_to",
    "due_date",
    "metadata",
    "project_id",
    "parent_id",
)


def changed_paths(before: pb.Task, after: pb.Task) -> list[str]:
    """The paths whose values differ between two versions of a task (an UPDATED event's changed_paths)."""
    paths = []
    for path in CHANGEABLE_PATHS:
        if path == "due_date":
            if before.HasField("due_date") != after.HasField("due_date") or before.due_date != after.due_date:
                paths.append(path)
        elif path == "labels":
            if list(before.labels) != list(after.labels):
                paths.append(path)
        elif path == "metadata":
            if dict(before.metadata) != dict(after.metadata):
                paths.append(path)
        elif getattr(before, path) != getattr(after, path):
            paths.append(path)
    return paths
