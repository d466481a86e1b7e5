"""Keyset pagination: list queries, sort keys and opaque, tamper-evident page tokens.

A page token names the last task of the previous page by every sort key's value and its id, so the next page is
an index range scan that costs the same on page 1 and page 10,000, and tasks created meanwhile never
make a task appear twice. The token is HMAC-signed with a key kept in the store (so every replica on
one database accepts it) and bound to the request's filters, order and caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass, replace

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import InvalidArgument
from taskservice.domain.filters import Filter, SearchQuery
from taskservice.domain.values import due_key, us_from_timestamp
from taskservice.domain.visibility import Sight

ORDERS = ("created_at", "updated_at", "priority", "due_date")
ORDER_KEYS_MAX = 4
_TOKEN_VERSION = 2
_MAC_BYTES = 16
_HEADER = struct.Struct(">B8sB")  # version, query fingerprint, number of sort values
_VALUE = struct.Struct(">q")


@dataclass(frozen=True, slots=True)
class SnapshotPart:
    """One part of a snapshot read in id order: the tasks after `after_id`, at most `limit` of them
    and no more than start within `max_bytes` of encoded tasks (the first always)."""

    after_id: str
    limit: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a list or snapshot covers. Values inside one field are ORed, fields are ANDed,
    and `expression` (the AIP-160 filter) and `search` (full text) must hold as well."""

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
    expression: Filter | None = None  # the AIP-160 filter (domain/filters.py)
    search: SearchQuery | None = None  # full-text words

    @property
    def testable(self) -> bool:
        """Whether `matches` decides this filter alone (full text needs the store's index)."""
        return self.search is None

    @property
    def countable(self) -> bool:
        """Whether a count of it may be kept current from events: `matches` decides it, and it
        means the same later (a `now`-relative filter does not)."""
        return self.testable and (self.expression is None or not self.expression.uses_now)

    def matches(self, task: pb.Task) -> bool:
        """The same test as the SQL stores' WHERE clause (`store/sql.py: where`), on one task
        (`search` aside: see `testable`)."""
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
            and (self.expression is None or self.expression.matches(task))
        )


@dataclass(frozen=True, slots=True)
class SortKey:
    field: str  # one of ORDERS
    descending: bool = False


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page: `order` empty means relevance (a search query without order_by), paged by
    position (`offset`); otherwise keyset paging after the sort values and id in `after`."""

    filter: TaskFilter
    order: tuple[SortKey, ...]
    limit: int
    after: tuple[tuple[int, ...], str] | None = None
    offset: int = 0

    @property
    def by_relevance(self) -> bool:
        return not self.order


def parse_order(text: str, descending: bool) -> tuple[SortKey, ...]:
    """AIP-132 `order_by`: "due_date desc, priority", or one field name whose direction is
    `descending` (the original form). Empty text: creation order."""
    if not text.strip():
        return (SortKey("created_at", descending),)
    if "," not in text and text.strip() in ORDERS:
        return (SortKey(text.strip(), descending),)

    def invalid(reason: str) -> InvalidArgument:
        return InvalidArgument.field("order_by", reason)

    keys: list[SortKey] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise invalid(f"{part.strip()!r} is not FIELD, FIELD asc or FIELD desc")
        if words[0] not in ORDERS:
            raise invalid(f"unknown order {words[0]!r}; use one of {', '.join(ORDERS)}")
        if any(key.field == words[0] for key in keys):
            raise invalid(f"{words[0]!r} appears twice")
        keys.append(SortKey(words[0], len(words) == 2 and words[1].lower() == "desc"))
    if len(keys) > ORDER_KEYS_MAX:
        raise invalid(f"at most {ORDER_KEYS_MAX} fields")
    return tuple(keys)


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
            f.expression.text if f.expression else "",
            f.search.text if f.search else "",
            ",".join(f"{key.field} {'desc' if key.descending else 'asc'}" for key in query.order),
        )
        return hashlib.sha256("\x1e".join(parts).encode()).digest()[:8]

    def encode(self, caller: Caller, query: PageQuery, last: pb.Task) -> str:
        """A token for the page after `last`: every sort key's value and the id (relevance: the position)."""
        if query.by_relevance:
            values, task_id = [query.offset + query.limit - 1], ""
        else:
            values, task_id = [sort_value(last, key.field) for key in query.order], last.id
        body = _HEADER.pack(_TOKEN_VERSION, self.fingerprint(caller, query), len(values))
        body += b"".join(_VALUE.pack(value) for value in values) + task_id.encode()
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

    def decode(self, caller: Caller, query: PageQuery, token: str) -> PageQuery:
        """The query continued after the token's position."""

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
        version, fingerprint, count = _HEADER.unpack_from(body)
        if version != _TOKEN_VERSION:
            raise invalid("was issued by an incompatible server version; start again from the first page")
        if fingerprint != self.fingerprint(caller, query):
            raise invalid("belongs to a different query (filters, order or caller changed); start again")
        at = _HEADER.size + count * _VALUE.size
        values = tuple(_VALUE.unpack_from(body, _HEADER.size + i * _VALUE.size)[0] for i in range(count))
        try:
            task_id = body[at:].decode()
        except UnicodeDecodeError:
            raise invalid("is not a page token returned by ListTasks") from None
        if query.by_relevance:
            return replace(query, offset=values[0])
        return replace(query, after=(values, task_id))


def history_token(task_id: str, sequence: int) -> str:
    """ListTaskEvents' page token: the task and the sequence of the last event returned. Unsigned:
    it can only move within the history of a task its holder may read."""
    return base64.urlsafe_b64encode(f"{sequence}:{task_id}".encode()).rstrip(b"=").decode()


def history_token_decode(task_id: str, token: str) -> int:
    try:
        sequence, _, named = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(":")
        value = int(sequence)
    except ValueError:
        raise InvalidArgument.field("page_token", "is not a page token returned by ListTaskEvents") from None
    if named != task_id or value < 0:
        raise InvalidArgument.field("page_token", "belongs to another task's history; start again")
    return value
