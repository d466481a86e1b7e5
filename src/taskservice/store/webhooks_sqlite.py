"""Webhooks on the embedded SQLite store, in the same database file as the tasks.

Webhook writes are rare and small next to task writes, so they do not go through the task writer's
group commit: one connection of their own runs every statement on one worker thread, waiting there
(never on the event loop) for the write lock the task writer may hold. The tables come from the
task store's migrations, which have run by the time this store opens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable
from typing import TypeVar

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

T = TypeVar("T")
_BUSY_TIMEOUT_MS = 10_000


class LocalLeases:
    """Leases within one process: the embedded store serves a single server process."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    async def acquire(self, name: str) -> bool:
        if name in self._held:
            return False
        self._held.add(name)
        return True

    async def release(self, name: str) -> None:
        self._held.discard(name)

    def valid(self) -> bool:
        return True

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self._held.clear()


class SQLiteWebhookStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-webhooks")
        self._leases = LocalLeases()

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous=FULL")
            return conn

        self._conn = await self._run_raw(connect)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._run_raw(conn.close)
        self._pool.shutdown()

    def leases(self) -> LocalLeases:
        return self._leases

    async def _run_raw(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run `work` on the store's thread, in a transaction when it writes."""

        def call() -> T:
            conn = self._conn
            if conn is None:
                raise Unavailable("the webhook store is closed")
            if not write:
                return work(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        try:
            return await self._run_raw(call)
        except sqlite3.Error as exc:
            raise Unavailable(f"the webhook store failed: {exc}") from None

    async def insert(self, record: WebhookRecord) -> None:
        w = record.webhook

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO webhooks ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
                ),
            )

        await self._run(work, write=True)

    async def get(self, webhook_id: str) -> WebhookRecord | None:
        def work(conn: sqlite3.Connection) -> WebhookRecord | None:
            row = conn.execute(f"SELECT {COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
            return record_from_row(row) if row else None

        return await self._run(work)

    async def page(self, created_by: str | None, after_id: str, limit: int) -> list[WebhookRecord]:
        def work(conn: sqlite3.Connection) -> list[WebhookRecord]:
            if created_by is None:
                rows = conn.execute(
                    f"SELECT {COLUMNS} FROM webhooks WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
                )
            else:
                rows = conn.execute(
                    f"SELECT {COLUMNS} FROM webhooks WHERE created_by = ? AND id > ? ORDER BY id LIMIT ?",
                    (created_by, after_id, limit),
                )
            return [record_from_row(row) for row in rows]

        return await self._run(work)

    async def active(self) -> list[WebhookRecord]:
        def work(conn: sqlite3.Connection) -> list[WebhookRecord]:
            rows = conn.execute(f"SELECT {COLUMNS} FROM webhooks WHERE active ORDER BY id")
            return [record_from_row(row) for row in rows]

        return await self._run(work)

    async def update(self, webhook_id: str, change: WebhookChange) -> WebhookRecord | None:
        def work(conn: sqlite3.Connection) -> WebhookRecord | None:
            row = conn.execute(f"SELECT {COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
            if row is None:
                return None
            current = record_from_row(row)
            changed = change(current)
            if changed is None:
                return current
            conn.execute(
                "UPDATE webhooks SET spec = ?, secret = ?, previous_secret = ?, previous_until_us = ?, "
                "active = ?, revision = ?, failing_since_us = ? WHERE id = ?",
                (
                    spec_of(changed),
                    changed.secret,
                    changed.previous_secret,
                    changed.previous_until_us,
                    changed.webhook.active,
                    changed.revision,
                    changed.failing_since_us,
                    webhook_id,
                ),
            )
            return changed

        return await self._run(work, write=True)

    async def delete(self, webhook_id: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,))
            return conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount > 0

        return await self._run(work, write=True)

    async def record(self, webhook_id: str, progress: Progress) -> None:
        def work(conn: sqlite3.Connection) -> None:
            updated = conn.execute(
                "UPDATE webhooks SET delivered_sequence = max(delivered_sequence, ?), failing_since_us = ?, "
                "last_error = coalesce(?, last_error), active = active AND NOT ? WHERE id = ?",
                (
                    progress.delivered_sequence,
                    progress.failing_since_us,
                    progress.last_error,
                    progress.disable,
                    webhook_id,
                ),
            ).rowcount
            if updated and progress.deliveries:
                conn.executemany(
                    f"INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS.partition(', ')[2]}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [delivery_values(d) for d in progress.deliveries],
                )

        await self._run(work, write=True)

    async def deliveries(self, webhook_id: str, before_id: int, limit: int) -> list[pb.WebhookDelivery]:
        def work(conn: sqlite3.Connection) -> list[pb.WebhookDelivery]:
            before = before_id or 2**63 - 1
            rows = conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ? AND id < ? "
                "ORDER BY id DESC LIMIT ?",
                (webhook_id, before, limit),
            )
            return [delivery_from_row(row) for row in rows]

        return await self._run(work)

    async def prune_deliveries(self, webhook_id: str, keep: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT id FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                (webhook_id, keep),
            ).fetchone()
            if row is None:
                return 0
            cursor = conn.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND id <= ?", (webhook_id, row[0])
            )
            return int(cursor.rowcount)

        return await self._run(work, write=True)
