"""Webhook persistence: what the webhook use cases and their delivery workers need from a store.

A webhook's user-set fields (url, filters, description, owner) travel as one protobuf `spec`; its
delivery state (cursor, last error, active) has columns of its own, so a worker recording progress
and a user updating the webhook never overwrite each other. The SQLite and PostgreSQL stores keep
them in the same database as the tasks (migration 0002), beside the event log they read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.values import timestamp_from_us
from taskservice.store.base import TaskStore


@dataclass(slots=True)
class WebhookRecord:
    """A stored webhook. `webhook` carries every wire field except `secret`; `creator_admin` is the
    creator's role when they created it (a webhook acts with its creator's sight, without a token)."""

    webhook: pb.Webhook
    creator_admin: bool
    secret: str
    previous_secret: str = ""
    previous_until_us: int = 0  # the previous secret signs too until then (rotation grace)
    revision: int = 1  # bumped by every user change: a running worker restarts on a new revision
    failing_since_us: int = 0  # when the event now being retried first failed; 0 when healthy


@dataclass(slots=True)
class Progress:
    """What a delivery worker learned since it last wrote: its cursor, the attempts it made, and
    whether the webhook is failing (`last_error`, None: unchanged) or must be disabled."""

    delivered_sequence: int
    failing_since_us: int
    last_error: str | None = None
    disable: bool = False
    deliveries: list[pb.WebhookDelivery] = field(default_factory=list)


WebhookChange = Callable[[WebhookRecord], "WebhookRecord | None"]


class Leases(Protocol):
    """Named leases shared by every replica on one database: at most one holds a name at a time,
    and a replica that dies (or loses its database connection) loses its leases."""

    async def acquire(self, name: str) -> bool: ...

    async def release(self, name: str) -> None: ...

    def valid(self) -> bool:
        """False once the leases taken so far may have been lost (their connection broke)."""

    async def check(self) -> None:
        """Probe the leases' connection, so that one which died quietly turns `valid()` False."""

    async def close(self) -> None: ...


class WebhookStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert(self, record: WebhookRecord) -> None: ...

    async def get(self, webhook_id: str) -> WebhookRecord | None: ...

    async def page(self, created_by: str | None, after_id: str, limit: int) -> list[WebhookRecord]:
        """Up to `limit` webhooks with id > `after_id` in id order; `created_by` None: everyone's."""

    async def active(self) -> list[WebhookRecord]:
        """Every active webhook, for the delivery workers."""

    async def update(self, webhook_id: str, change: WebhookChange) -> WebhookRecord | None:
        """Apply `change` atomically to the user-set fields (None from it: no change); None when the
        webhook does not exist. Whatever `change` raises propagates and nothing is written."""

    async def delete(self, webhook_id: str) -> bool:
        """Remove the webhook and its delivery log; False when it did not exist."""

    async def record(self, webhook_id: str, progress: Progress) -> None:
        """Store a worker's progress and delivery attempts (nothing when the webhook is gone)."""

    async def deliveries(self, webhook_id: str, before_id: int, limit: int) -> list[pb.WebhookDelivery]:
        """Up to `limit` delivery attempts, newest first, with id < `before_id` (0: from the newest)."""

    async def prune_deliveries(self, webhook_id: str, keep: int) -> int:
        """Drop all but the newest `keep` attempts of a webhook; returns how many went."""

    def leases(self) -> Leases: ...


def open_webhook_store(task_store: TaskStore) -> WebhookStore:
    """The webhook store on the same database as `task_store` (an `InstrumentedStore` or a bare one)."""
    inner: Any = getattr(task_store, "inner", task_store)
    from taskservice.store.sqlite import SQLiteStore

    if isinstance(inner, SQLiteStore):
        from taskservice.store.webhooks_sqlite import SQLiteWebhookStore

        return SQLiteWebhookStore(inner.path)
    from taskservice.store.postgres import PostgresStore

    if isinstance(inner, PostgresStore):
        from taskservice.store.webhooks_postgres import PostgresWebhookStore

        return PostgresWebhookStore(inner.dsn)
    raise TypeError(f"no webhook store for {type(inner).__name__}")


# -- shared by both stores --------------------------------------------------------------------

COLUMNS = (
    "id, created_by, creator_admin, spec, secret, previous_secret, previous_until_us, active, revision, "
    "delivered_sequence, last_error, failing_since_us"
)
DELIVERY_COLUMNS = "id, webhook_id, sequence, attempt, http_status, error, attempted_us, duration_ms, success"


def record_from_row(row: Any) -> WebhookRecord:
    """A WebhookRecord from a row of `COLUMNS` (a tuple or an asyncpg Record)."""
    (_, _, admin, spec, secret, previous, until, active, revision, delivered, last_error, failing) = tuple(
        row
    )
    webhook = pb.Webhook.FromString(bytes(spec))
    webhook.active = bool(active)
    webhook.delivered_sequence = int(delivered)
    webhook.last_error = last_error
    return WebhookRecord(webhook, bool(admin), secret, previous, int(until), int(revision), int(failing))


def spec_of(record: WebhookRecord) -> bytes:
    """The user-set fields of a record's webhook, encoded; the state columns are kept apart."""
    spec = pb.Webhook()
    spec.CopyFrom(record.webhook)
    spec.ClearField("secret")
    spec.ClearField("active")
    spec.ClearField("delivered_sequence")
    spec.ClearField("last_error")
    return spec.SerializeToString()


def delivery_from_row(row: Any) -> pb.WebhookDelivery:
    delivery_id, webhook_id, sequence, attempt, status, error, attempted_us, duration_ms, success = tuple(row)
    return pb.WebhookDelivery(
        id=str(delivery_id),
        webhook_id=webhook_id,
        sequence=int(sequence),
        attempt=int(attempt),
        http_status=int(status),
        error=error,
        attempted_at=timestamp_from_us(int(attempted_us)),
        duration_ms=int(duration_ms),
        success=bool(success),
    )


def delivery_values(delivery: pb.WebhookDelivery) -> tuple[Any, ...]:
    """A delivery's columns after `id` (the store numbers attempts itself)."""
    at = delivery.attempted_at
    return (
        delivery.webhook_id,
        delivery.sequence,
        delivery.attempt,
        delivery.http_status,
        delivery.error,
        at.seconds * 1_000_000 + at.nanos // 1000,
        delivery.duration_ms,
        delivery.success,
    )
