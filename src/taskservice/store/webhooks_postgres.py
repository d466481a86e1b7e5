"""Webhooks on PostgreSQL, shared by every replica, and the leases that keep one replica per webhook.

A lease is a session-level advisory lock held on one dedicated connection: PostgreSQL releases it
when that session ends, so a replica that dies (or is cut off) hands its webhooks and its exporter
to another within one reconcile round. The tables come from the task store's migrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import Unavailable
from taskservice.store.webhooks import (
    COLUMNS,
    DELIVERY_COLUMNS,
    Progress,
    WebhookChange,
    WebhookRecord,
    delivery_from_row,
    delivery_values,
    record_from_row,
    spec_of,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
_POOL_SIZE = 4
_TIMEOUT = 5.0
_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def lease_key(name: str) -> int:
    """A lease name as a 64-bit advisory lock key (signed, as PostgreSQL's bigint)."""
    digest = hashlib.sha256(b"taskservice-lease:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLeases:
    """Leases as advisory locks on one connection of their own. When that connection breaks, every
    lease taken on it is gone: `valid()` turns False and the next `acquire` starts a new session."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None
        self._held: set[str] = set()
        self._lock = asyncio.Lock()

    def valid(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def acquire(self, name: str) -> bool:
        async with self._lock:
            try:
                if not self.valid():
                    await self._reconnect()
                if name in self._held:
                    return False
                got = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", lease_key(name)))
            except _ERRORS as exc:
                log.warning("leases.unavailable", error=type(exc).__name__)
                self._drop()
                return False
            if got:
                self._held.add(name)
            return got

    async def release(self, name: str) -> None:
        async with self._lock:
            if name not in self._held:
                return
            self._held.discard(name)
            if self.valid():
                with contextlib.suppress(*_ERRORS):
                    await self._conn.execute("SELECT pg_advisory_unlock($1)", lease_key(name))

    async def check(self) -> None:
        """Probe the lease session, so a connection that died quietly is noticed."""
        async with self._lock:
            if self.valid():
                try:
                    await self._conn.fetchval("SELECT 1", timeout=_TIMEOUT)
                except _ERRORS:
                    self._drop()

    async def close(self) -> None:
        async with self._lock:
            self._drop()

    async def _reconnect(self) -> None:
        self._drop()
        self._conn = await asyncpg.connect(self._dsn, timeout=_TIMEOUT)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            conn.terminate()


class PostgresWebhookStore:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._leases = AdvisoryLeases(dsn)

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=1, max_size=_POOL_SIZE, timeout=_TIMEOUT, command_timeout=15.0
        )

    async def close(self) -> None:
        await self._leases.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(*_ERRORS):
                await asyncio.wait_for(pool.close(), 5)

    def leases(self) -> AdvisoryLeases:
        return self._leases

    async def _run(self, work: Callable[[Any], Awaitable[T]], *, write: bool = False) -> T:
        if self._pool is None:
            raise Unavailable("the webhook store is closed")
        try:
            async with self._pool.acquire(timeout=_TIMEOUT) as conn:
                if not write:
                    return await work(conn)
                async with conn.transaction():
                    return await work(conn)
        except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
            log.warning("webhooks.store_unavailable", error=type(exc).__name__)
            raise Unavailable("the webhook store is unavailable; retry shortly") from None

    async def insert(self, record: WebhookRecord) -> None:
        w = record.webhook

        async def work(conn: Any) -> None:
            await conn.execute(
                f"INSERT INTO webhooks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                w.id,
                w.created_by,
                record.creator_admin,
                spec_of(record),
                record.secret,
                record.previous_secret,
                record.previous_until_us,
                w.active,
                record.revision,
                w.delivered_sequence,
                w.last_error,
                record.failing_since_us,
            )

        await self._run(work, write=True)

    async def get(self, webhook_id: str) -> WebhookRecord | None:
        async def work(conn: Any) -> WebhookRecord | None:
            row = await conn.fetchrow(f"SELECT {COLUMNS} FROM webhooks WHERE id = $1", webhook_id)
            return record_from_row(row) if row else None

        return await self._run(work)

    async def page(self, created_by: str | None, after_id: str, limit: int) -> list[WebhookRecord]:
        async def work(conn: Any) -> list[WebhookRecord]:
            if created_by is None:
                rows = await conn.fetch(
                    f"SELECT {COLUMNS} FROM webhooks WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {COLUMNS} FROM webhooks WHERE created_by = $1 AND id > $2 ORDER BY id LIMIT $3",
                    created_by,
                    after_id,
                    limit,
                )
            return [record_from_row(row) for row in rows]

        return await self._run(work)

    async def active(self) -> list[WebhookRecord]:
        async def work(conn: Any) -> list[WebhookRecord]:
            rows = await conn.fetch(f"SELECT {COLUMNS} FROM webhooks WHERE active ORDER BY id")
            return [record_from_row(row) for row in rows]

        return await self._run(work)

    async def update(self, webhook_id: str, change: WebhookChange) -> WebhookRecord | None:
        async def work(conn: Any) -> WebhookRecord | None:
            row = await conn.fetchrow(f"SELECT {COLUMNS} FROM webhooks WHERE id = $1 FOR UPDATE", webhook_id)
            if row is None:
                return None
            current = record_from_row(row)
            changed = change(current)
            if changed is None:
                return current
            await conn.execute(
                "UPDATE webhooks SET spec = $1, secret = $2, previous_secret = $3, previous_until_us = $4, "
                "active = $5, revision = $6, failing_since_us = $7 WHERE id = $8",
                spec_of(changed),
                changed.secret,
                changed.previous_secret,
                changed.previous_until_us,
                changed.webhook.active,
                changed.revision,
                changed.failing_since_us,
                webhook_id,
            )
            return changed

        return await self._run(work, write=True)

    async def delete(self, webhook_id: str) -> bool:
        async def work(conn: Any) -> bool:
            await conn.execute("DELETE FROM webhook_deliveries WHERE webhook_id = $1", webhook_id)
            status = await conn.execute("DELETE FROM webhooks WHERE id = $1", webhook_id)
            return bool(status != "DELETE 0")

        return await self._run(work, write=True)

    async def record(self, webhook_id: str, progress: Progress) -> None:
        async def work(conn: Any) -> None:
            status = await conn.execute(
                "UPDATE webhooks SET delivered_sequence = greatest(delivered_sequence, $1), "
                "failing_since_us = $2, last_error = coalesce($3, last_error), active = active AND NOT $4 "
                "WHERE id = $5",
                progress.delivered_sequence,
                progress.failing_since_us,
                progress.last_error,
                progress.disable,
                webhook_id,
            )
            if status != "UPDATE 0" and progress.deliveries:
                await conn.executemany(
                    f"INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS.partition(', ')[2]}) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    [delivery_values(d) for d in progress.deliveries],
                )

        await self._run(work, write=True)

    async def deliveries(self, webhook_id: str, before_id: int, limit: int) -> list[pb.WebhookDelivery]:
        async def work(conn: Any) -> list[pb.WebhookDelivery]:
            rows = await conn.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 "
                "ORDER BY id DESC LIMIT $3",
                webhook_id,
                before_id or 2**63 - 1,
                limit,
            )
            return [delivery_from_row(row) for row in rows]

        return await self._run(work)

    async def prune_deliveries(self, webhook_id: str, keep: int) -> int:
        async def work(conn: Any) -> int:
            status = await conn.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND id <= ("
                "SELECT id FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
                webhook_id,
                keep,
            )
            return int(status.rpartition(" ")[2])

        return await self._run(work, write=True)
