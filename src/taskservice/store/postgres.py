"""The shared store: PostgreSQL through an asyncpg pool, for many replicas on one database.

Changes are group-committed (`postgres_writer.py`): the writes waiting on a replica share one
transaction, in which each locks its task row (`FOR UPDATE`), lets the service's callback decide and
writes the task; the batch then appends all its events by bumping the single `event_log` row once.
That row lock is taken last and held until commit, so writers number their events in commit order: a
reader that has seen sequence N never later meets a smaller committed number, on any replica. The same statement
sends a NOTIFY; each replica LISTENs on a dedicated connection and, when woken, reads the log after
the last event it delivered, so events committed by other replicas reach its watchers in order.
Failures are told apart by SQLSTATE class, not exception class (see store/faults.py): connection
exceptions (08), operator intervention such as an admin shutdown (57P), insufficient resources (53),
system errors (58), and any failure to get a connection (a database that refuses connections
answers 55000) surface as `Unavailable`; the pool and the listener reconnect on their own.
Internal errors (XX: a damaged index or page) are INTERNAL and make the server not ready.

Longer than most modules: it is the one class that implements every TaskStore method on PostgreSQL
(tasks, projects, history, trash), and they share the pool, the listener and the retry helpers; the
writer (postgres_writer.py) and the SQL shared with SQLite (sql.py) already live apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import DomainError, NotFound, Unavailable
from taskservice.domain.paging import PageQuery, SnapshotPart, TaskFilter
from taskservice.domain.values import now_us, timestamp_from_us, us_from_timestamp
from taskservice.store import sql
from taskservice.store.base import (
    PROJECT_EVENT,
    Change,
    Check,
    CreateResult,
    EarlierRequest,
    EventBounds,
    EventListener,
    NewTask,
    Page,
    ProjectChange,
    ProjectCheck,
    ProjectEvent,
    StoredEvent,
    decode_event,
    project_event_row,
)
from taskservice.store.counts import CountCache
from taskservice.store.faults import DAMAGED, Kind, StoreFaults
from taskservice.store.migrations import migrations
from taskservice.store.postgres_writer import EventChange, GroupWriter, Op, PlainCreates, WriterHooks, within

log = structlog.get_logger(__name__)

T = TypeVar("T")
Connection = Any  # asyncpg.Connection or a pool proxy of one; asyncpg ships no usable stubs

CHANNEL = "taskservice_events"
_MIGRATION_LOCK = 7_311_540_001  # pg_advisory_lock key: one replica migrates, the others wait
_POOL_SIZE = 10
DEFAULT_TIMEOUT = 5.0  # --store-timeout
_CONNECT_TIMEOUT = 5.0
_COMMAND_TIMEOUT = 15.0
_POLL_EVERY = 2.0  # the listener also re-reads the log this often, in case a NOTIFY was missed
_RECONNECT_MAX = 2.0
_LOG_BATCH = 1000

# Errors raised on this side of the connection: the connection itself failed.
_CLIENT_SIDE_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")  # connection, resources, operator intervention, system
_RETRYABLE = (asyncpg.exceptions.TransactionRollbackError,)  # class 40: serialization failure, deadlock


def kind(error: BaseException) -> Kind:
    """What a failure means, from its SQLSTATE class (store/faults.py)."""
    if isinstance(error, _ConnectFailed):
        return Kind.UNAVAILABLE
    if isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        if state[:2] in _UNAVAILABLE_CLASSES:
            return Kind.UNAVAILABLE
        if state[:2] == "23":
            return Kind.CONSTRAINT
        if state[:2] == "XX":
            return Kind.CORRUPTION
        return Kind.OTHER
    if isinstance(error, _CLIENT_SIDE_CONNECTION_ERRORS):
        return Kind.UNAVAILABLE
    return Kind.OTHER


def is_connection_error(error: BaseException) -> bool:
    return kind(error) is Kind.UNAVAILABLE


class _ConnectFailed(Exception):
    """No connection could be had: whatever the reason (refused, not accepting connections, bad
    credentials), the store is unavailable, and nothing was sent."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


_APPEND_EVENTS = f"""
WITH log AS (UPDATE event_log SET head = head + $1 WHERE id = 1 RETURNING head),
added AS (
    INSERT INTO events (sequence, event_type, task_id, occurred_us, triggered_by, task, previous)
    SELECT log.head - $1 + e.n, e.event_type, e.task_id, e.occurred_us, e.triggered_by, e.task, e.previous
    FROM log, unnest($2::int[], $3::text[], $4::bigint[], $5::text[], $6::bytea[], $7::bytea[])
        WITH ORDINALITY AS e(event_type, task_id, occurred_us, triggered_by, task, previous, n)
)
SELECT log.head, pg_notify('{CHANNEL}', log.head::text) FROM log
"""
_EVENT_COLUMNS = "sequence, event_type, occurred_us, triggered_by, task, previous"
_INSERT_TASK = "INSERT INTO tasks VALUES (" + ", ".join(f"${n}" for n in range(1, sql.TASK_COLUMNS + 1)) + ")"
_UPDATE_TASK = sql.update_task_sql(lambda n: f"${n}")
_INSERT_LABEL = "INSERT INTO task_labels VALUES ($1, $2) ON CONFLICT DO NOTHING"
# A purged task's history goes with it; the events past the horizon, which replay may still need,
# go when pruning reaches them (it drops the events of tasks that no longer exist).
_FORGET_HISTORY = "DELETE FROM events WHERE task_id = ANY($1::text[]) AND sequence <= (SELECT horizon FROM event_log WHERE id = 1)"


def _dollar(n: int) -> str:
    return f"${n}"


def _unavailable(exc: BaseException) -> Unavailable:
    log.warning("store.unavailable", error=type(exc).__name__, detail=str(exc)[:200])
    return Unavailable("the task store is unavailable; retry shortly")


def _event_from_row(row: Any) -> StoredEvent:
    return decode_event(
        row["sequence"],
        row["event_type"],
        row["occurred_us"],
        row["triggered_by"],
        row["task"],
        row["previous"],
    )


class PostgresStore:
    """TaskStore on PostgreSQL; any number of processes may share one database."""

    def __init__(self, dsn: str, pool_size: int = _POOL_SIZE, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._listeners: list[EventListener] = []
        self._delivered = 0  # the newest sequence handed to listeners; they get every one after it
        self._wake = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        self._closing = False
        self._writer: GroupWriter | None = None
        self.faults = StoreFaults()
        # Counts of recent list filters, kept exact from the log every replica reads in order.
        self._counts = CountCache()

    @property
    def dsn(self) -> str:
        """The connection string, for the webhook store that shares this database."""
        return self._dsn

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self.migrate()
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            timeout=_CONNECT_TIMEOUT,
            command_timeout=_COMMAND_TIMEOUT,
            # asyncpg prepares every statement, and after five runs PostgreSQL may switch to a plan
            # made without the parameters' values; a list's best plan depends on them (which user,
            # which project), and the generic one sorted every visible task (docs/performance.md).
            reset=_keep_session,
            server_settings={
                "plan_cache_mode": "force_custom_plan",
                # A replica cut off mid-transaction cannot roll back: its session would hold row
                # locks (the event log's, which every writer needs) until PostgreSQL notices the
                # connection is gone. Nothing here waits between statements for longer than this.
                "idle_in_transaction_session_timeout": str(int(self._timeout * 1000)),
            },
        )
        self._delivered = (await self.event_bounds()).head
        self._writer = GroupWriter(
            WriterHooks(
                connection=self._connection,
                insert_created=_insert_created,
                append=self._append,
                is_connection_error=is_connection_error,
                on_connection_error=lambda _: self._db.expire_connections(),
                deliver=self._deliver,
            ),
            timeout=self._timeout,
        )
        self._writer.start()
        self._follower = asyncio.create_task(self._follow(), name="postgres-listener")
        log.info("store.opened", kind="postgresql", head=self._delivered)

    async def migrate(self) -> None:
        """Apply pending migrations under an advisory lock, so replicas starting together do not race."""
        conn = await asyncpg.connect(self._dsn, timeout=_CONNECT_TIMEOUT)
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us BIGINT NOT NULL)"
            )
            applied = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in migrations("postgres"):
                if migration.version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        now_us(),
                    )
                log.info("store.migrated", version=migration.version, name=migration.name)
            await _backfill(conn)
        finally:
            with contextlib.suppress(*_CLIENT_SIDE_CONNECTION_ERRORS, asyncpg.PostgresError):
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
            await conn.close()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        self._closing = True
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        if self._pool is not None:
            with contextlib.suppress(*_CLIENT_SIDE_CONNECTION_ERRORS, asyncpg.PostgresError):
                await asyncio.wait_for(self._pool.close(), 5)
            self._pool = None

    def subscribe(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    # -- event delivery -----------------------------------------------------------------------

    def _deliver(self, events: list[StoredEvent]) -> None:
        """Hand listeners the events after `_delivered`; a batch that would leave a gap waits for the
        listener task, which reads the log in order."""
        fresh = [e for e in events if e.sequence > self._delivered]
        if not fresh:
            return
        if fresh[0].sequence != self._delivered + 1:
            self._wake.set()
            return
        self._delivered = fresh[-1].sequence
        self._counts.apply(fresh)
        for listener in self._listeners:
            listener(fresh)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            if int(payload) <= self._delivered:
                return  # our own commit, already delivered
        self._wake.set()

    async def _follow(self) -> None:
        """LISTEN for commits from every replica and deliver the log after `_delivered`, forever."""
        delay = 0.1
        while not self._closing:
            conn: Any = None
            try:
                async with asyncio.timeout(self._timeout):
                    conn = await asyncpg.connect(self._dsn, timeout=_CONNECT_TIMEOUT)
                    conn.add_termination_listener(lambda _: self._wake.set())
                    await conn.add_listener(CHANNEL, self._on_notify)
                log.info("store.listening", after=self._delivered)
                delay = 0.1
                while not conn.is_closed():
                    self._wake.clear()
                    await self._catch_up(conn)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), _POLL_EVERY)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("store.listener_lost", error=type(exc).__name__, retry_in=delay)
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    async def _catch_up(self, conn: Connection) -> None:
        """Deliver the log after `_delivered`. Each read is bounded by the store timeout: it is also
        how a silent partition is noticed on a connection that otherwise only waits for NOTIFY."""
        while True:
            rows = await conn.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE sequence > $1 ORDER BY sequence LIMIT $2",
                self._delivered,
                _LOG_BATCH,
                timeout=self._timeout,
            )
            if not rows:
                return
            events = [_event_from_row(row) for row in rows]
            if events[0].sequence > self._delivered + 1:
                # The log was pruned past us (this replica was cut off for longer than the retention):
                # move on; watchers that needed the lost events get OUT_OF_RANGE from the window.
                log.warning("store.events_skipped", after=self._delivered, next=events[0].sequence)
                self._delivered = events[0].sequence - 1
                self._counts.clear()  # they missed those events
            self._deliver(events)
            if len(rows) < _LOG_BATCH:
                return

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("the task store is closed")
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._db
        try:
            conn = await pool.acquire(timeout=_CONNECT_TIMEOUT)
        except Exception as error:
            raise _ConnectFailed(error) from error
        try:
            yield conn
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError) or is_connection_error(error):
                # Cut off mid-statement (a timeout) or broken: its state is unknown, and asking it
                # to cancel or reset would wait on the same dead network. Closed, never reused.
                conn.terminate()
            raise
        finally:
            await pool.release(conn)

    def _failure(self, error: BaseException) -> DomainError:
        """The domain error for a failure that is not the database being out of reach."""
        log.error("store.failed", error=type(error).__name__, detail=str(error)[:200], exc_info=error)
        if kind(error) is Kind.CORRUPTION:
            return self.faults.error(Kind.CORRUPTION, DAMAGED)
        return self.faults.error(kind(error), "internal error")

    async def _transaction(self, work: Callable[[Connection], Awaitable[T]], *, retries: int = 2) -> T:
        """Run `work` in a transaction, within the store timeout. Connection failures before COMMIT
        is sent are retried (nothing was written); after it, the outcome is unknown and the caller
        gets UNAVAILABLE."""
        return await within(self._timeout, self._transaction_attempts(work, retries))

    async def _transaction_attempts(self, work: Callable[[Connection], Awaitable[T]], retries: int) -> T:
        attempt = 0
        while True:
            committing = False
            try:
                async with self._connection() as conn:
                    tx = conn.transaction()
                    await tx.start()
                    try:
                        result = await work(conn)
                    except Exception as exc:
                        # A broken or timed-out connection is closed instead (see _connection).
                        if not is_connection_error(exc):
                            with contextlib.suppress(*_CLIENT_SIDE_CONNECTION_ERRORS, asyncpg.PostgresError):
                                await tx.rollback()
                        raise
                    committing = True
                    await tx.commit()
                    return result
            except DomainError:
                raise
            except _RETRYABLE as exc:
                if attempt >= retries:
                    raise _unavailable(exc) from None
            except Exception as exc:
                if not is_connection_error(exc):
                    raise self._failure(exc) from None
                self._db.expire_connections()
                if committing or attempt >= retries:
                    raise _unavailable(exc) from None
            attempt += 1

    async def _read(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run a read within the store timeout, once more on a fresh connection if the first one
        turns out to be dead."""
        return await within(self._timeout, self._read_attempts(work))

    async def _read_attempts(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        for attempt in range(2):
            try:
                async with self._connection() as conn:
                    return await work(conn)
            except DomainError:
                raise
            except Exception as exc:
                if not is_connection_error(exc):
                    raise self._failure(exc) from None
                self._db.expire_connections()
                if attempt:
                    raise _unavailable(exc) from None
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        if self.faults.damaged:
            raise Unavailable(self.faults.damaged)

        async def probe(conn: Connection) -> None:
            await conn.fetchval("SELECT 1")

        await self._read(probe)

    async def secret(self, name: str) -> bytes:
        key = f"secret:{name}"

        async def create(conn: Connection) -> bytes:
            await conn.execute("INSERT INTO meta VALUES ($1, $2) ON CONFLICT DO NOTHING", key, os.urandom(32))
            return bytes(await conn.fetchval("SELECT value FROM meta WHERE key = $1", key))

        return await self._transaction(create)

    # -- writes -------------------------------------------------------------------------------

    async def _append(self, conn: Connection, changes: list[EventChange]) -> list[StoredEvent]:
        """Append events for `changes` (type, task, previous, triggered_by, or a project's change);
        must be the last statement before COMMIT, because it holds the event-log lock until then."""
        rows: list[tuple[int, str, str, bytes, bytes | None]] = []
        for change in changes:
            if isinstance(change, ProjectEvent):
                project_id, body, before = project_event_row(change.project, change.before)
                rows.append((PROJECT_EVENT, project_id, change.triggered_by, body, before))
            else:
                kind, task, previous, by = change
                rows.append(
                    (
                        kind,
                        task.id,
                        by,
                        task.SerializeToString(),
                        previous.SerializeToString() if previous is not None else None,
                    )
                )
        if not rows:
            return []
        occurred = now_us()
        head = await conn.fetchval(
            _APPEND_EVENTS,
            len(rows),
            [r[0] for r in rows],
            [r[1] for r in rows],
            [occurred] * len(rows),
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
            column=0,
        )
        first = head - len(rows) + 1
        events: list[StoredEvent] = []
        for sequence, change in enumerate(changes, first):
            if isinstance(change, ProjectEvent):
                events.append(
                    StoredEvent.of_project(
                        sequence, change.project, change.before, occurred, change.triggered_by
                    )
                )
            else:
                kind, task, previous, by = change
                events.append(StoredEvent(sequence, kind, task, previous, occurred, by))
        return events

    async def _write(self, op: Op | PlainCreates) -> Any:
        if self._writer is None:
            raise Unavailable("the task store is closed")
        return await self._writer.run(op)

    async def create_many(self, items: list[NewTask]) -> list[CreateResult]:
        if not any(item.request_id for item in items):
            created: list[CreateResult] = await self._write(PlainCreates([i.task for i in items]))
            return created

        async def op(conn: Connection) -> tuple[list[CreateResult], list[EventChange]]:
            results: list[CreateResult] = []
            fresh: list[pb.Task] = []
            for item in items:
                if item.request_id and not await _claim_request(conn, item):
                    results.append(await _earlier_request(conn, item, fresh))
                    continue
                fresh.append(item.task)
                results.append(item.task)
            await _insert_created(conn, fresh)
            return results, [(pb.EVENT_TYPE_CREATED, task, None, task.created_by) for task in fresh]

        results: list[CreateResult] = await self._write(op)
        return results

    async def update(
        self, task_id: str, change: Change, triggered_by: str, event_type: int = pb.EVENT_TYPE_UPDATED
    ) -> pb.Task:
        async def op(conn: Connection) -> tuple[pb.Task, list[EventChange]]:
            current = await _lock(conn, task_id)
            updated = change(current)
            if updated is None:
                return current, []
            await conn.execute(_UPDATE_TASK, *sql.update_task_values(updated))
            if list(updated.labels) != list(current.labels):
                await conn.execute("DELETE FROM task_labels WHERE task_id = $1", task_id)
                if updated.labels:
                    await conn.executemany(_INSERT_LABEL, [(label, task_id) for label in updated.labels])
            return updated, [(event_type, updated, current, triggered_by)]

        task: pb.Task = await self._write(op)
        return task

    async def delete(self, task_id: str, check: Check, triggered_by: str) -> pb.Task:
        async def op(conn: Connection) -> tuple[pb.Task, list[EventChange]]:
            current = await _lock(conn, task_id)
            check(current)
            await conn.execute("DELETE FROM tasks WHERE id = $1", task_id)
            await conn.execute("DELETE FROM task_labels WHERE task_id = $1", task_id)
            await conn.execute(
                "DELETE FROM events WHERE task_id = $1 AND sequence <= (SELECT horizon FROM event_log WHERE id = 1)",
                task_id,
            )
            return current, [(pb.EVENT_TYPE_DELETED, current, None, triggered_by)]

        task: pb.Task = await self._write(op)
        return task

    async def prune(self, events_before_us: int, keep_events: int, keys_before_us: int) -> int:
        async def work(conn: Connection) -> int:
            head = await conn.fetchval("SELECT head FROM event_log WHERE id = 1")
            by_time = await conn.fetchval(
                "SELECT coalesce(max(sequence), 0) FROM events WHERE occurred_us < $1", events_before_us
            )
            cut = max(by_time, head - keep_events)
            # As in the SQLite store: events of existing tasks stay (their history), and only
            # those after the old horizon are examined.
            removed = await conn.fetchval(
                "WITH gone AS (DELETE FROM events WHERE sequence > (SELECT horizon FROM event_log WHERE id = 1) "
                "AND sequence <= $1 AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.id = events.task_id) "
                "RETURNING 1) SELECT count(*) FROM gone",
                cut,
            )
            await conn.execute("DELETE FROM idempotency_keys WHERE created_us < $1", keys_before_us)
            # The horizon moves even when every event there was kept as history: replay may not
            # start before it. The row is locked (and writers wait) only when it moves.
            await conn.execute("UPDATE event_log SET horizon = $1 WHERE id = 1 AND horizon < $1", cut)
            return int(removed)

        return await self._transaction(work)

    async def purge_trash(self, deleted_before_us: int) -> int:
        async def work(conn: Connection) -> int:
            ids = [
                row[0]
                for row in await conn.fetch(
                    "DELETE FROM tasks WHERE deleted_us > 0 AND deleted_us < $1 RETURNING id",
                    deleted_before_us,
                )
            ]
            if ids:
                await conn.execute("DELETE FROM task_labels WHERE task_id = ANY($1::text[])", ids)
                await conn.execute(_FORGET_HISTORY, ids)
            return len(ids)

        return await self._transaction(work)

    # -- projects -----------------------------------------------------------------------------

    async def create_project(self, project: pb.Project, triggered_by: str) -> pb.Project:
        async def op(conn: Connection) -> tuple[pb.Project, list[EventChange]]:
            inserted = await conn.fetchval(
                "INSERT INTO projects VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                project.id,
                us_from_timestamp(project.created_at),
                project.SerializeToString(),
            )
            if inserted is None:  # a repeated request id: the project its first attempt made
                return await _lock_project(conn, project.id), []
            await _write_members(conn, project)
            return project, [ProjectEvent(project, None, triggered_by)]

        result: pb.Project = await self._write(op)
        return result

    async def get_project(self, project_id: str) -> pb.Project | None:
        async def work(conn: Connection) -> pb.Project | None:
            body = await conn.fetchval("SELECT body FROM projects WHERE id = $1", project_id)
            return pb.Project.FromString(body) if body is not None else None

        return await self._read(work)

    async def update_project(self, project_id: str, change: ProjectChange, triggered_by: str) -> pb.Project:
        async def op(conn: Connection) -> tuple[pb.Project, list[EventChange]]:
            current = await _lock_project(conn, project_id)
            updated = change(current)
            if updated is None:
                return current, []
            await conn.execute(
                "UPDATE projects SET body = $1 WHERE id = $2", updated.SerializeToString(), project_id
            )
            await _write_members(conn, updated)
            return updated, [ProjectEvent(updated, current, triggered_by)]

        result: pb.Project = await self._write(op)
        return result

    async def delete_project(self, project_id: str, check: ProjectCheck, triggered_by: str) -> pb.Project:
        async def op(conn: Connection) -> tuple[pb.Project, list[EventChange]]:
            current = await _lock_project(conn, project_id)
            live = [
                pb.Task.FromString(row[0])
                for row in await conn.fetch(
                    "SELECT body FROM tasks WHERE project_id = $1 AND deleted_us = 0 ORDER BY id FOR UPDATE",
                    project_id,
                )
            ]
            changes: list[EventChange] = []
            if check(current, len(live)):
                deleted = timestamp_from_us(now_us())
                for task in live:
                    trashed = pb.Task()
                    trashed.CopyFrom(task)
                    trashed.delete_time.CopyFrom(deleted)
                    await conn.execute(_UPDATE_TASK, *sql.update_task_values(trashed))
                    changes.append((pb.EVENT_TYPE_DELETED, trashed, task, triggered_by))
            await conn.execute(
                "DELETE FROM task_labels WHERE task_id IN "
                "(SELECT id FROM tasks WHERE project_id = $1 AND deleted_us > 0)",
                project_id,
            )
            gone = [
                row[0]
                for row in await conn.fetch(
                    "DELETE FROM tasks WHERE project_id = $1 AND deleted_us > 0 RETURNING id", project_id
                )
            ]
            await conn.execute(_FORGET_HISTORY, gone)
            await conn.execute("DELETE FROM projects WHERE id = $1", project_id)
            await conn.execute("DELETE FROM project_members WHERE project_id = $1", project_id)
            return current, [*changes, ProjectEvent(None, current, triggered_by)]

        result: pb.Project = await self._write(op)
        return result

    async def list_projects(self, member: str | None, after_id: str, limit: int) -> list[pb.Project]:
        async def work(conn: Connection) -> list[pb.Project]:
            if member is None:
                rows = await conn.fetch(
                    "SELECT body FROM projects WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
                )
            else:
                rows = await conn.fetch(
                    "SELECT p.body FROM project_members m JOIN projects p ON p.id = m.project_id "
                    "WHERE m.user_id = $1 AND m.project_id > $2 ORDER BY m.project_id LIMIT $3",
                    member,
                    after_id,
                    limit,
                )
            return [pb.Project.FromString(row[0]) for row in rows]

        return await self._read(work)

    async def count_projects(self, member: str | None) -> int:
        async def work(conn: Connection) -> int:
            if member is None:
                return int(await conn.fetchval("SELECT count(*) FROM projects"))
            return int(await conn.fetchval("SELECT count(*) FROM project_members WHERE user_id = $1", member))

        return await self._read(work)

    async def memberships(self, user: str) -> tuple[dict[str, int], int]:
        async def work(conn: Connection) -> tuple[dict[str, int], int]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                head = await conn.fetchval("SELECT head FROM event_log WHERE id = 1")
                rows = await conn.fetch(
                    "SELECT project_id, role FROM project_members WHERE user_id = $1", user
                )
            return {row[0]: int(row[1]) for row in rows}, int(head)

        return await self._read(work)

    async def project_events(self, after: int, upto: int) -> list[StoredEvent]:
        async def work(conn: Connection) -> list[StoredEvent]:
            rows = await conn.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_type = $1 AND sequence > $2 "
                "AND sequence <= $3 ORDER BY sequence",
                PROJECT_EVENT,
                after,
                upto,
            )
            return [_event_from_row(row) for row in rows]

        return await self._read(work)

    # -- reads --------------------------------------------------------------------------------

    async def get(self, task_id: str) -> pb.Task | None:
        async def work(conn: Connection) -> pb.Task | None:
            body = await conn.fetchval("SELECT body FROM tasks WHERE id = $1", task_id)
            return pb.Task.FromString(body) if body is not None else None

        return await self._read(work)

    async def list_page(self, query: PageQuery) -> list[pb.Task]:
        params = sql.Params(_dollar)
        statement = sql.page_sql(query, params)

        async def work(conn: Connection) -> list[pb.Task]:
            return [pb.Task.FromString(row[0]) for row in await conn.fetch(statement, *params.values)]

        return await self._read(work)

    async def page(self, query: PageQuery) -> Page:
        """One REPEATABLE READ snapshot for the head, the page and the count. The head is read from
        `event_log`, whose row every writer updates last and holds locked until commit, so a
        snapshot that sees head N sees every event up to N, whichever replica wrote them."""
        page_params = sql.Params(_dollar)
        page_statement = sql.page_sql(query, page_params)
        count_params = sql.Params(_dollar)
        count_statement = sql.count_sql(query.filter, count_params)

        async def work(conn: Connection) -> Page:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                head = int(await conn.fetchval("SELECT head FROM event_log WHERE id = 1"))
                rows = await conn.fetch(page_statement, *page_params.values)
                total = self._counts.get_at(query.filter, head)
                if total is None:
                    total = int(await conn.fetchval(count_statement, *count_params.values))
                    # Kept only when no event after this snapshot was delivered yet: those after it
                    # are applied as they arrive, one already past would be missed.
                    if query.filter.countable and self._delivered <= head:
                        self._counts.put(query.filter, total, head)
            return Page([pb.Task.FromString(row[0]) for row in rows], total, head)

        return await self._read(work)

    async def count(self, task_filter: TaskFilter, *, keep: bool = True) -> int:
        cached = self._counts.get(task_filter)
        if cached is not None:
            return cached
        params = sql.Params(_dollar)
        statement = sql.count_sql(task_filter, params)

        async def work(conn: Connection) -> tuple[int, int]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                head = await conn.fetchval("SELECT head FROM event_log WHERE id = 1")
                return int(await conn.fetchval(statement, *params.values)), int(head)

        value, head = await self._read(work)
        # Kept only when no event after the count's snapshot was delivered meanwhile: those after
        # it are applied as they arrive, one already past would be missed.
        if keep and self._delivered <= head:
            self._counts.put(task_filter, value, head)
        return value

    async def status_counts(self) -> tuple[dict[int, int], int]:
        async def work(conn: Connection) -> tuple[dict[int, int], int]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                head = await conn.fetchval("SELECT head FROM event_log WHERE id = 1")
                rows = await conn.fetch(
                    "SELECT status, count(*) FROM tasks WHERE deleted_us = 0 GROUP BY status"
                )
            return {int(row[0]): int(row[1]) for row in rows}, int(head)

        return await self._read(work)

    async def snapshot(
        self, task_filter: TaskFilter, part: SnapshotPart | None = None
    ) -> tuple[list[pb.Task], int]:
        params = sql.Params(_dollar)
        statement = sql.snapshot_sql(task_filter, params, part)

        async def work(conn: Connection) -> tuple[list[pb.Task], int]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                head = await conn.fetchval("SELECT head FROM event_log WHERE id = 1")
                rows = await conn.fetch(statement, *params.values)
            return [pb.Task.FromString(row[0]) for row in rows], int(head)

        return await self._read(work)

    async def events_after(self, sequence: int, limit: int) -> list[StoredEvent]:
        async def work(conn: Connection) -> list[StoredEvent]:
            rows = await conn.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE sequence > $1 ORDER BY sequence LIMIT $2",
                sequence,
                limit,
            )
            return [_event_from_row(row) for row in rows]

        return await self._read(work)

    async def task_events(self, task_id: str, after: int, limit: int) -> list[StoredEvent]:
        async def work(conn: Connection) -> list[StoredEvent]:
            rows = await conn.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE task_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
                task_id,
                after,
                limit,
            )
            return [_event_from_row(row) for row in rows]

        return await self._read(work)

    async def event_bounds(self) -> EventBounds:
        async def work(conn: Connection) -> EventBounds:
            row = await conn.fetchrow("SELECT head, horizon FROM event_log WHERE id = 1")
            return EventBounds(horizon=int(row["horizon"]), head=int(row["head"]))

        return await self._read(work)


async def _keep_session(conn: Connection) -> None:
    """How a connection is reset when given back to the pool: it is not. Pool connections carry no
    session state (the migration's advisory lock and the LISTEN have connections of their own), so
    asyncpg's default RESET ALL / UNLISTEN / CLOSE ALL would cost a round trip per call for nothing,
    a round trip that a slow or lossy network makes long. asyncpg still rolls back a transaction
    left open."""


async def _insert_created(conn: Connection, tasks: list[pb.Task]) -> None:
    if not tasks:
        return
    await conn.executemany(_INSERT_TASK, [sql.task_row(task) for task in tasks])
    labels = [(label, task.id) for task in tasks for label in task.labels]
    if labels:
        await conn.executemany(_INSERT_LABEL, labels)


async def _backfill(conn: Connection) -> None:
    """Fill in the filter columns of rows written before migration 5, from their bodies."""
    rows = await conn.fetch(sql.BACKFILL)
    if rows:
        tasks = [pb.Task.FromString(row[0]) for row in rows]
        await conn.executemany(_UPDATE_TASK, [sql.update_task_values(task) for task in tasks])
        log.info("store.backfilled", tasks=len(tasks))


async def _lock(conn: Connection, task_id: str) -> pb.Task:
    body = await conn.fetchval("SELECT body FROM tasks WHERE id = $1 FOR UPDATE", task_id)
    if body is None:
        raise NotFound.task(task_id)
    return pb.Task.FromString(body)


async def _claim_request(conn: Connection, item: NewTask) -> bool:
    """Record the idempotency key; False when it exists. A concurrent claim of the same key on
    another replica waits for that transaction, so exactly one of them creates the task."""
    claimed = await conn.fetchval(
        "INSERT INTO idempotency_keys VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1",
        item.task.created_by,
        item.request_id,
        item.request_hash,
        item.task.id,
        now_us(),
        item.task.SerializeToString(),
    )
    return claimed is not None


async def _earlier_request(conn: Connection, item: NewTask, fresh: list[pb.Task]) -> EarlierRequest:
    """What a repeated key found; `fresh` are the tasks this transaction inserts after its loop (a
    key repeated within one bulk chunk names one of them, not yet in the table)."""
    row = await conn.fetchrow(
        "SELECT k.request_hash, k.response, t.body FROM idempotency_keys k "
        "LEFT JOIN tasks t ON t.id = k.task_id WHERE k.created_by = $1 AND k.request_id = $2",
        item.task.created_by,
        item.request_id,
    )
    created = pb.Task.FromString(row["response"])
    current = pb.Task.FromString(row["body"]) if row["body"] is not None else None
    if current is None:
        current = next((task for task in fresh if task.id == created.id), None)
    return EarlierRequest(bytes(row["request_hash"]), created, current)


async def _lock_project(conn: Connection, project_id: str) -> pb.Project:
    body = await conn.fetchval("SELECT body FROM projects WHERE id = $1 FOR UPDATE", project_id)
    if body is None:
        raise NotFound.project(project_id)
    return pb.Project.FromString(body)


async def _write_members(conn: Connection, project: pb.Project) -> None:
    """Make project_members hold exactly the project's members."""
    await conn.execute("DELETE FROM project_members WHERE project_id = $1", project.id)
    await conn.executemany(
        "INSERT INTO project_members VALUES ($1, $2, $3)",
        [(member.user, project.id, member.role) for member in project.members],
    )
