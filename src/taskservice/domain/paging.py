"""Keyset pagination: list queries, sort keys and opaque, tamper-evident page tokens.

A page token names the last task of the previous page by its sort key and id, so the next page is
an index range scan that costs the same on page 1 and page 10,000, and tasks created meanwhile never
make a task appear twice. The token is HMAC-signed with a key kept in the store (so every replica on
one database accepts it) and bound to the request's filters, order and caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import InvalidArgument
from taskservice.domain.values import due_key, us_from_timestamp
from taskservice.domain.visibility import Sight

ORDERS = ("created_at", "updated_at", "priority", "due_date")
_TOKEN_VERSION = 1
_MAC_BYTES = 16
_HEADER = struct.Struct(">B8sq")  # version, query fingerprint, sort value


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a list or snapshot covers. Values inside one field are ORed, fields are ANDed."""

    statuses: tuple[int, ...] = ()
    priorities: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()
    assigned_to: str = ""
    created_by: str = ""
    task_ids: tuple[str, ...] = ()
    project_ids: tuple[str, ...] = ()
    parent_ids: tuple[str, ...] = ()
    trashed: bool = False  # False: live tasks only; True: the trash only
    visible_to: Sight | None = None  # None: every task (admin); else what that Sight sees

    def matches(self, task: pb.Task) -> bool:
        """The same test as the SQL stores' WHERE clause (`store/sql.py: where`), on one task."""
        return (
            (self.visible_to is None or self.visible_to.sees(task))
            and task.HasField("delete_time") == self.trashed
            and (not self.project_ids or task.project_id in self.project_ids)
            and (not self.parent_ids or task.parent_id in self.parent_ids)
            and (not self.statuses or task.status in self.statuses)
            and (not self.priorities or task.priority in self.priorities)
            and (not self.assigned_to or task.assigned_to == self.assigned_to)
            and (not self.created_by or task.created_by == self.created_by)
            and (not self.task_ids or task.id in self.task_ids)
            and (not self.labels or any(label in self.labels for label in task.labels))
        )


@dataclass(frozen=True, slots=True)
class PageQuery:
    filter: TaskFilter
    order_by: str
    descending: bool
    limit: int
    after: tuple[int, str] | None = None  # (sort value, task id) of the last task already returned


def sort_value(task: pb.Task, order_by: str) -> int:
    if order_by == "created_at":
        return us_from_timestamp(task.created_at)
    if order_by == "updated_at":
        return us_from_timestamp(task.updated_at)
    if order_by == "priority":
        return int(task.priority)
    return due_key(task)


class PageTokens:
    """Signs and verifies page tokens."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @staticmethod
    def fingerprint(caller: Caller, query: PageQuery) -> bytes:
        f = query.filter
        parts = (
            caller.user_id,
            str(caller.is_admin),
            ",".join(map(str, sorted(f.statuses))),
            ",".join(map(str, sorted(f.priorities))),
            "\x1f".join(sorted(f.labels)),
            f.assigned_to,
            f.created_by,
            ",".join(f.project_ids),
            ",".join(f.parent_ids),
            str(f.trashed),
            query.order_by,
            str(query.descending),
        )
        return hashlib.sha256("\x1e".join(parts).encode()).digest()[:8]

    def encode(self, caller: Caller, query: PageQuery, last: pb.Task) -> str:
        body = _HEADER.pack(_TOKEN_VERSION, self.fingerprint(caller, query), sort_value(last, query.order_by))
        body += last.id.encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()

    def sign(self, scope: str, value: str) -> str:
        """An opaque token for `value` (a key to resume after), valid only for `scope`."""
        body = value.encode()
        mac = hmac.new(self._key, scope.encode() + b"\x1e" + body, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()

    def verify(self, scope: str, token: str) -> str:
        """The value `sign(scope, value)` made `token` from; INVALID_ARGUMENT when it did not."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
            expected = hmac.new(self._key, scope.encode() + b"\x1e" + body, hashlib.sha256).digest()
            if len(raw) >= _MAC_BYTES and hmac.compare_digest(mac, expected[:_MAC_BYTES]):
                return body.decode()
        except (ValueError, UnicodeDecodeError):
            pass
        raise InvalidArgument.field("page_token", "is not a page token returned by this list call")

    def decode(self, caller: Caller, query: PageQuery, token: str) -> tuple[int, str]:
        def invalid(reason: str) -> InvalidArgument:
            return InvalidArgument.field("page_token", reason)

        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise invalid("is not a page token returned by ListTasks") from None
        if len(raw) < _HEADER.size + _MAC_BYTES:
            raise invalid("is not a page token returned by ListTasks")
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise invalid("is not a page token returned by ListTasks (signature mismatch)")
        version, fingerprint, value = _HEADER.unpack_from(body)
        if version != _TOKEN_VERSION:
            raise invalid("was issued by an incompatible server version; start again from the first page")
        if fingerprint != self.fingerprint(caller, query):
            raise invalid("belongs to a different query (filters, order or caller changed); start again")
        try:
            task_id = body[_HEADER.size :].decode()
        except UnicodeDecodeError:
            raise invalid("is not a page token returned by ListTasks") from None
        return value, task_id
