"""Small helpers over the protobuf domain types: identifiers, time, and who is calling.

The service works on the generated protobuf messages directly (a Task is a `pb.Task`): they are the
wire format and the stored format, so no layer has to copy fields from one shape into another.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from taskservice.api import task_service_pb2 as pb

Task = pb.Task

# Sort key used for tasks without a due date: they sort after every dated task (ascending).
NO_DUE_DATE = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated identity behind a request."""

    user_id: str
    is_admin: bool = False

    def can_see(self, task: pb.Task) -> bool:
        return self.is_admin or task.created_by == self.user_id or task.assigned_to == self.user_id


ANONYMOUS_ADMIN = Caller("anonymous", is_admin=True)


def now_us() -> int:
    return time.time_ns() // 1000


def new_task_id() -> str:
    """A UUIDv7: time-ordered, so ids sort roughly by creation and index inserts stay local."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def timestamp_from_us(us: int) -> Timestamp:
    return Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def us_from_timestamp(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def due_key(task: pb.Task) -> int:
    return us_from_timestamp(task.due_date) if task.HasField("due_date") else NO_DUE_DATE
