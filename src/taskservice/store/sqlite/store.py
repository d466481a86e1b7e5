"""The embedded store: SQLite in WAL mode, durable, with group commit.

Writes are queued to the `Writer` (writer.py), which takes every write that is waiting, runs them on the event loop
in one transaction (a failing write is answered alone; see `Writer._apply`), and has a worker thread commit
it with a single fsync; only then are they answered: a write is acknowledged only once it is on
disk, and concurrent writers share the cost of the sync. Commit order is sequence order, because
batches run one at a time. Reads run on the event loop on a read-only connection: WAL lets them
proceed during commits, and a primary-key lookup costs less than handing it to a thread; a task read
once is then answered from `TaskCache`, which committed events keep current.

Big batches of plain creates (bulk chunks) are committed by a helper process (bulk_process.py):
the worker thread hands it the encoded tasks and waits, without the GIL, for the commit, so the
inserts' statements stop taking the GIL back from the event loop one by one. Nothing else is
written meanwhile, so the order holds.

Longer than most modules: it is the one class implementing every TaskStore method on SQLite; the
writer, the bulk process, the checkpointer, the start-up checks and the SQL live in their own
modules of this package.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import structlog

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import DomainError, Unavailable
from taskservice.domain.paging import PageQuery, SnapshotPart, TaskFilter
from taskservice.domain.values import now_us, timestamp_from_us, us_from_timestamp
from taskservice.store import sql
from taskservice.store.base import (
    PROJECT_EVENT,
    Change,
    Check,
    CreateResult,
    EventBounds,
    EventListener,
    NewTask,
    Page,
    ProjectChange,
    ProjectCheck,
    StoredEvent,
)
from taskservice.store.counts import CountCache
from taskservice.store.faults import StoreFaults, StoreUnusable, sqlite_message
from taskservice.store.migrations import migrations
from taskservice.store.sqlite import preflight
from taskservice.store.sqlite import statements as stmt
from taskservice.store.sqlite.bulk_process import BulkProcess
from taskservice.store.sqlite.checkpointer import Checkpointer
from taskservice.store.sqlite.writer import Op, PlainCreates, Writer, WriterTuning
from taskservice.store.taskcache import TaskCache

log = structlog.get_logger(__name__)

_CHECKPOINT_EVERY_S = 0.2
P = ParamSpec("P")
R = TypeVar("R")


def _classified(
    read: Callable[Concatenate[SQLiteStore, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SQLiteStore, P], Coroutine[Any, Any, R]]:
    """A read whose database failures reach the caller by kind (see store/faults.py), never raw."""

    async def run(self: SQLiteStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await read(self, *args, **kwargs)
        except sqlite3.Error as error:
            log.error("store.read_failed", error=str(error))
            raise self.faults.sqlite(error) from None

    functools.update_wrapper(run, read)
    return run


class SQLiteStore:
    """TaskStore on SQLite. `path=None` makes a throw-away store in a temporary folder."""

    def __init__(
        self,
        path: str | None,
        *,
        durable: bool = True,
        tuning: WriterTuning | None = None,
        allow_empty: bool = False,
    ) -> None:
        self._tmpdir = tempfile.mkdtemp(prefix="taskservice-") if path is None else None
        self.path = path if path is not None else str(Path(self._tmpdir or ".") / "tasks.db")
        self._durable = durable and path is not None
        self._listeners: list[EventListener] = []
        self._tuning = tuning
        self._writer: Writer | None = None
        self._checkpointer: Checkpointer | None = None
        self._reader: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self._counts = CountCache()
        self._cache = TaskCache()
        self._published = 0  # the last event sequence handed to listeners
        self._allow_empty = allow_empty
        self.faults = StoreFaults()
        self._publish_waiters: list[asyncio.Future[None]] = []

    # -- life cycle ---------------------------------------------------------------------------

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        return stmt.connect(self.path, durable=self._durable, readonly=readonly)

    async def open(self) -> None:
        """Check the file (preflight.py), migrate it and start writing; StoreUnusable says in one
        line why the file cannot be used."""
        await asyncio.to_thread(preflight.check, self.path, allow_empty=self._allow_empty)
        try:
            await asyncio.to_thread(self._migrate)
        except sqlite3.Error as error:
            raise StoreUnusable(f"{self.path}: {sqlite_message(error)} ({error})") from None
        bulk = BulkProcess(self.path, self._durable)
        loop = asyncio.get_running_loop()
        self._writer = Writer(
            self._connect,
            loop,
            self._publish,
            bulk,
            durable=self._durable,
            tuning=self._tuning,
            faults=self.faults,
        )
        self._writer.start()
        self._checkpointer = Checkpointer(self._connect, _CHECKPOINT_EVERY_S)
        self._checkpointer.start()
        self._reader = self._connect(readonly=True)
        self._file_id = stmt.file_id(self.path)
        self._published = stmt.head(self._reader)
        log.info("store.opened", kind="sqlite", path=self.path, durable=self._durable)

    def _migrate(self) -> None:
        conn = self._connect()
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us INTEGER NOT NULL)"
            )
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations("sqlite"):
                if migration.version in applied:
                    continue
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in stmt.split_script(migration.sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (migration.version, migration.name, now_us()),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                log.info("store.migrated", version=migration.version, name=migration.name)
            self._backfill(conn)
            stmt.refresh_statistics(conn)
        finally:
            conn.close()

    @staticmethod
    def _backfill(conn: sqlite3.Connection) -> None:
        """Fill in the filter columns of rows written before migration 5, from their bodies."""
        tasks = [pb.Task.FromString(row[0]) for row in conn.execute(sql.BACKFILL)]
        if tasks:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(stmt.UPDATE_TASK, [sql.update_task_values(task) for task in tasks])
            conn.execute("COMMIT")
            log.info("store.backfilled", tasks=len(tasks))

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        for waiter in self._publish_waiters:  # they see the store closed and raise Unavailable
            if not waiter.done():
                waiter.set_result(None)
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
            self._checkpointer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._cache.clear()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def subscribe(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def _publish(self, events: list[StoredEvent]) -> None:
        self._published = events[-1].sequence
        self._counts.apply(events)
        self._cache.apply(events)
        for listener in self._listeners:
            listener(events)
        waiters, self._publish_waiters = self._publish_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _until_published(self, sequence: int) -> None:
        """Return once events up to `sequence` were handed to listeners (a moment after commit)."""
        while self._published < sequence:
            if self._writer is None:
                raise Unavailable("the task store is closed")
            waiter = asyncio.get_running_loop().create_future()
            self._publish_waiters.append(waiter)
            await waiter

    @property
    def _db(self) -> sqlite3.Connection:
        if self._reader is None:
            raise Unavailable("the task store is closed")
        return self._reader

    @property
    def writer(self) -> Writer | None:
        """The group-commit writer while the store is open."""
        return self._writer

    def write(self, op: Op) -> asyncio.Future[Any]:
        """Run `op` in the writer's next batch; the future resolves once its transaction is durable."""
        if self._writer is None:
            raise Unavailable("the task store is closed")
        return self._writer.submit(op)

    async def ping(self) -> None:
        """Readable, writable and still the file at `path`: open handles keep working on a database
        file that was deleted or moved away (a lost volume), but nothing written there would survive
        a restart. A damaged database stays unready; after a failed write (disk full, read-only) a
        small write is tried, and the store is ready again once one succeeds."""
        if self.faults.damaged:
            raise Unavailable(self.faults.damaged)
        if self.faults.write_failure:
            failure = self.faults.write_failure
            try:
                await self.write(_probe_write)
            except DomainError:
                raise Unavailable(failure) from None
        try:
            self._db.execute("SELECT 1 FROM tasks LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise Unavailable(f"the task store is not readable: {exc}") from None
        try:
            same_file = stmt.file_id(self.path) == self._file_id
        except OSError as exc:
            raise Unavailable(f"the database file is gone: {exc}") from None
        if not same_file:
            raise Unavailable(f"{self.path} is no longer the database file this server opened")

    @_classified
    async def secret(self, name: str) -> bytes:
        key = f"secret:{name}"
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:

            def create(conn: sqlite3.Connection) -> tuple[None, list[StoredEvent]]:
                conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, os.urandom(32)))
                return None, []

            await self.write(create)
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return bytes(row[0])

    # -- writes -------------------------------------------------------------------------------

    async def create_many(self, items: list[NewTask]) -> list[CreateResult]:
        if not any(item.request_id for item in items):
            plain: list[CreateResult] = await self.write(PlainCreates([item.task for item in items]))
            return plain

        def op(conn: sqlite3.Connection) -> tuple[list[CreateResult], list[StoredEvent]]:
            results: list[CreateResult] = []
            events: list[StoredEvent] = []
            pending: list[pb.Task] = []  # inserted together: one executemany per table, not per task
            for item in items:
                task = item.task
                if not item.request_id:
                    pending.append(task)
                    results.append(task)
                    continue
                earlier = stmt.earlier_request(conn, item)
                if earlier is not None:
                    results.append(earlier)
                    continue
                pending.append(task)
                events += stmt.insert_created(conn, pending)
                pending.clear()
                conn.execute(
                    "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        task.created_by,
                        item.request_id,
                        item.request_hash,
                        task.id,
                        now_us(),
                        task.SerializeToString(),
                    ),
                )
                results.append(task)
            events += stmt.insert_created(conn, pending)
            return results, events

        result: list[CreateResult] = await self.write(op)
        return result

    async def update(
        self, task_id: str, change: Change, triggered_by: str, event_type: int = pb.EVENT_TYPE_UPDATED
    ) -> pb.Task:
        def op(conn: sqlite3.Connection) -> tuple[pb.Task, list[StoredEvent]]:
            current = stmt.load_task(conn, task_id)
            updated = change(current)
            if updated is None:
                return current, []
            conn.execute(stmt.UPDATE_TASK, sql.update_task_values(updated))
            if list(updated.labels) != list(current.labels):
                conn.execute("DELETE FROM task_labels WHERE task_id = ?", (task_id,))
                stmt.insert_labels(conn, updated)
            return updated, [stmt.append_event(conn, event_type, updated, current, triggered_by)]

        result: pb.Task = await self.write(op)
        return result

    async def delete(self, task_id: str, check: Check, triggered_by: str) -> pb.Task:
        def op(conn: sqlite3.Connection) -> tuple[pb.Task, list[StoredEvent]]:
            current = stmt.load_task(conn, task_id)
            check(current)
            conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
            conn.execute("DELETE FROM task_labels WHERE task_id = ?", (task_id,))
            # Its history goes with it: the events past the horizon, which replay still needs, go
            # when pruning reaches them.
            conn.execute(
                "DELETE FROM events WHERE task_id = ? AND sequence <= ?", (task_id, stmt.horizon(conn))
            )
            return current, [stmt.append_event(conn, pb.EVENT_TYPE_DELETED, current, None, triggered_by)]

        result: pb.Task = await self.write(op)
        return result

    async def prune(self, events_before_us: int, keep_events: int, keys_before_us: int) -> int:
        def op(conn: sqlite3.Connection) -> tuple[int, list[StoredEvent]]:
            head = stmt.head(conn)
            by_time = conn.execute(
                "SELECT coalesce(max(sequence), 0) FROM events WHERE occurred_us < ?", (events_before_us,)
            ).fetchone()[0]
            cut = max(by_time, head - keep_events)
            # Events up to the old horizon were pruned already (a task's are dropped when it is
            # deleted): only those since then are examined, so the cost does not grow with history.
            removed = conn.execute(
                "DELETE FROM events WHERE sequence > ? AND sequence <= ? "
                "AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.id = events.task_id)",
                (stmt.horizon(conn), cut),
            ).rowcount
            if cut > stmt.horizon(conn):
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('event_horizon', ?)", (str(cut).encode(),))
            conn.execute("DELETE FROM idempotency_keys WHERE created_us < ?", (keys_before_us,))
            stmt.refresh_statistics(conn, only_if_stale=True)
            return removed, []

        result: int = await self.write(op)
        return result

    async def purge_trash(self, deleted_before_us: int) -> int:
        def op(conn: sqlite3.Connection) -> tuple[int, list[StoredEvent]]:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM tasks WHERE deleted_us > 0 AND deleted_us < ?", (deleted_before_us,)
                )
            ]
            horizon = stmt.horizon(conn)
            for task_id in ids:
                conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
                conn.execute("DELETE FROM task_labels WHERE task_id = ?", (task_id,))
                # Its history goes with it; events past the horizon, which replay may still need,
                # go when pruning reaches them (it drops the events of tasks that no longer exist).
                conn.execute("DELETE FROM events WHERE task_id = ? AND sequence <= ?", (task_id, horizon))
            return len(ids), []

        purged: int = await self.write(op)
        if purged:
            # Purges append no events, so what was kept current from events is rebuilt on demand.
            self._counts.clear()
            self._cache.clear()
        return purged

    # -- projects -----------------------------------------------------------------------------

    async def create_project(self, project: pb.Project, triggered_by: str) -> pb.Project:
        def op(conn: sqlite3.Connection) -> tuple[pb.Project, list[StoredEvent]]:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO projects VALUES (?, ?, ?)",
                (project.id, us_from_timestamp(project.created_at), project.SerializeToString()),
            ).rowcount
            if not inserted:  # a repeated request id: the project its first attempt made
                return stmt.load_project(conn, project.id), []
            stmt.write_members(conn, project)
            return project, [stmt.append_project_event(conn, project, None, triggered_by)]

        result: pb.Project = await self.write(op)
        return result

    @_classified
    async def get_project(self, project_id: str) -> pb.Project | None:
        row = self._db.execute("SELECT body FROM projects WHERE id = ?", (project_id,)).fetchone()
        return pb.Project.FromString(row[0]) if row is not None else None

    async def update_project(self, project_id: str, change: ProjectChange, triggered_by: str) -> pb.Project:
        def op(conn: sqlite3.Connection) -> tuple[pb.Project, list[StoredEvent]]:
            current = stmt.load_project(conn, project_id)
            updated = change(current)
            if updated is None:
                return current, []
            conn.execute(
                "UPDATE projects SET body = ? WHERE id = ?", (updated.SerializeToString(), project_id)
            )
            stmt.write_members(conn, updated)
            return updated, [stmt.append_project_event(conn, updated, current, triggered_by)]

        result: pb.Project = await self.write(op)
        return result

    async def delete_project(self, project_id: str, check: ProjectCheck, triggered_by: str) -> pb.Project:
        def op(conn: sqlite3.Connection) -> tuple[pb.Project, list[StoredEvent]]:
            current = stmt.load_project(conn, project_id)
            live = [
                pb.Task.FromString(row[0])
                for row in conn.execute(
                    "SELECT body FROM tasks WHERE project_id = ? AND deleted_us = 0 ORDER BY id",
                    (project_id,),
                )
            ]
            events: list[StoredEvent] = []
            if check(current, len(live)):
                deleted = timestamp_from_us(now_us())
                for task in live:
                    trashed = pb.Task()
                    trashed.CopyFrom(task)
                    trashed.delete_time.CopyFrom(deleted)
                    conn.execute(stmt.UPDATE_TASK, sql.update_task_values(trashed))
                    events.append(stmt.append_event(conn, pb.EVENT_TYPE_DELETED, trashed, task, triggered_by))
            conn.execute(
                "DELETE FROM task_labels WHERE task_id IN "
                "(SELECT id FROM tasks WHERE project_id = ? AND deleted_us > 0)",
                (project_id,),
            )
            conn.execute(
                "DELETE FROM events WHERE sequence <= ? AND task_id IN "
                "(SELECT id FROM tasks WHERE project_id = ? AND deleted_us > 0)",
                (stmt.horizon(conn), project_id),
            )  # their history goes with them, as in purge_trash
            conn.execute("DELETE FROM tasks WHERE project_id = ? AND deleted_us > 0", (project_id,))
            conn.execute("DELETE FROM projects WHERE id = ?", (project_id,))
            conn.execute("DELETE FROM project_members WHERE project_id = ?", (project_id,))
            events.append(stmt.append_project_event(conn, None, current, triggered_by))
            return current, events

        result: pb.Project = await self.write(op)
        self._counts.clear()  # the purged trash left without events
        self._cache.clear()
        return result

    @_classified
    async def list_projects(self, member: str | None, after_id: str, limit: int) -> list[pb.Project]:
        if member is None:
            rows = self._db.execute(
                "SELECT body FROM projects WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            )
        else:
            rows = self._db.execute(
                "SELECT p.body FROM project_members m JOIN projects p ON p.id = m.project_id "
                "WHERE m.user_id = ? AND m.project_id > ? ORDER BY m.project_id LIMIT ?",
                (member, after_id, limit),
            )
        return [pb.Project.FromString(row[0]) for row in rows]

    @_classified
    async def count_projects(self, member: str | None) -> int:
        if member is None:
            row = self._db.execute("SELECT count(*) FROM projects").fetchone()
        else:
            row = self._db.execute(
                "SELECT count(*) FROM project_members WHERE user_id = ?", (member,)
            ).fetchone()
        return int(row[0])

    @_classified
    async def memberships(self, user: str) -> tuple[dict[str, int], int]:
        db = self._db
        db.execute("BEGIN")
        try:
            head = stmt.head(db)  # what these rows reflect, though perhaps not yet published
            rows = db.execute("SELECT project_id, role FROM project_members WHERE user_id = ?", (user,))
            return {project_id: int(role) for project_id, role in rows}, head
        finally:
            db.execute("COMMIT")

    @_classified
    async def project_events(self, after: int, upto: int) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT sequence, event_type, occurred_us, triggered_by, task, previous FROM events "
            "WHERE event_type = ? AND sequence > ? AND sequence <= ? ORDER BY sequence",
            (PROJECT_EVENT, after, upto),
        )
        return [stmt.event_from_row(row) for row in rows]

    # -- reads --------------------------------------------------------------------------------

    @_classified
    async def get(self, task_id: str) -> pb.Task | None:
        task = self._cache.get(task_id)
        if task is not None:
            return task
        row = self._db.execute("SELECT body FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            return None
        task = pb.Task.FromString(row[0])
        self._cache.put(task)
        return task

    @_classified
    async def list_page(self, query: PageQuery) -> list[pb.Task]:
        params = sql.Params(stmt.qmark)
        statement = sql.page_sql(query, params)
        return [pb.Task.FromString(row[0]) for row in self._db.execute(statement, params.values)]

    @_classified
    async def page(self, query: PageQuery) -> Page:
        """The head, the page and the count in one read transaction (the count from the cache when
        it is kept at that very head). The answer waits until the head's events are published, so a
        watch from its sequence is never ahead of this process's event window."""
        page_params = sql.Params(stmt.qmark)
        page_statement = sql.page_sql(query, page_params)
        db = self._db
        db.execute("BEGIN")
        try:
            head = stmt.head(db)
            tasks = [pb.Task.FromString(row[0]) for row in db.execute(page_statement, page_params.values)]
            total = self._counts.get_at(query.filter, head)
            if total is None:
                count_params = sql.Params(stmt.qmark)
                count_statement = sql.count_sql(query.filter, count_params)
                total = int(db.execute(count_statement, count_params.values).fetchone()[0])
                if query.filter.countable:
                    self._counts.put(query.filter, total, head)
        finally:
            db.execute("COMMIT")
        await self._until_published(head)
        return Page(tasks, total, head)

    @_classified
    async def count(self, task_filter: TaskFilter, *, keep: bool = True) -> int:
        cached = self._counts.get(task_filter)
        if cached is not None:
            return cached
        params = sql.Params(stmt.qmark)
        statement = sql.count_sql(task_filter, params)
        db = self._db
        db.execute("BEGIN")
        try:
            head = stmt.head(db)
            value = int(db.execute(statement, params.values).fetchone()[0])
        finally:
            db.execute("COMMIT")
        if keep:
            self._counts.put(task_filter, value, head)
        return value

    @_classified
    async def status_counts(self) -> tuple[dict[int, int], int]:
        def read() -> tuple[dict[int, int], int]:
            conn = self._connect(readonly=True)
            try:
                conn.execute("BEGIN")
                head = stmt.head(conn)
                rows = conn.execute(
                    "SELECT status, count(*) FROM tasks WHERE deleted_us = 0 GROUP BY status"
                ).fetchall()
                conn.execute("COMMIT")
            finally:
                conn.close()
            return {int(status): int(count) for status, count in rows}, head

        return await asyncio.to_thread(read)

    @_classified
    async def snapshot(
        self, task_filter: TaskFilter, part: SnapshotPart | None = None
    ) -> tuple[list[pb.Task], int]:
        params = sql.Params(stmt.qmark)
        statement = sql.snapshot_sql(task_filter, params, part)
        db = self._db
        db.execute("BEGIN")
        try:
            head = stmt.head(db)
            tasks = [pb.Task.FromString(row[0]) for row in db.execute(statement, params.values)]
        finally:
            db.execute("COMMIT")
        return tasks, head

    @_classified
    async def events_after(self, sequence: int, limit: int) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT sequence, event_type, occurred_us, triggered_by, task, previous FROM events "
            "WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (sequence, limit),
        )
        return [stmt.event_from_row(row) for row in rows]

    @_classified
    async def task_events(self, task_id: str, after: int, limit: int) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT sequence, event_type, occurred_us, triggered_by, task, previous FROM events "
            "WHERE task_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
            (task_id, after, limit),
        )
        return [stmt.event_from_row(row) for row in rows]

    @_classified
    async def event_bounds(self) -> EventBounds:
        """The head is the last event published, not the last committed: a batch is readable from
        the moment its COMMIT returns on the worker thread, a moment before the event loop answers
        its writes and publishes its events. A watch that starts in between must still receive
        them, so it may not take them for events that came before it."""
        db = self._db
        db.execute("BEGIN")
        try:
            return EventBounds(horizon=stmt.horizon(db), head=min(stmt.head(db), self._published))
        finally:
            db.execute("COMMIT")


_PROBE_BYTES = 256 * 1024  # about the largest task a create or update writes, with its event


def _probe_write(conn: sqlite3.Connection) -> tuple[None, list[StoredEvent]]:
    """A write the size of a large task, left no trace, that tells readiness whether writes succeed
    again after one failed (a full disk): a tiny write can fit where real ones still fail."""
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('write_probe', zeroblob(?))", (_PROBE_BYTES,))
    conn.execute("DELETE FROM meta WHERE key = 'write_probe'")
    return None, []
