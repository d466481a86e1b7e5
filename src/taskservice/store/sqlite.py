"""The embedded store: SQLite in WAL mode, durable, with group commit.

Writes go through one writer thread. It takes every write that is waiting, runs them in one
transaction (each in its own savepoint, so one failing write does not undo the others), commits with
a single fsync and only then answers them: a write is acknowledged only once it is on disk, and
concurrent writers share the cost of the sync. Commit order is sequence order, because there is one
writer. Reads run on the event loop on a read-only connection: WAL lets them proceed during commits,
and a primary-key lookup costs less than handing it to a thread; a task read once is then answered
from `TaskCache`, which committed events keep current.

Big batches of plain creates (bulk chunks) are committed by a helper process (`sqlite_child.py`):
the writer thread hands it the encoded tasks and waits, without the GIL, for the commit, so the
inserts' statements stop taking the GIL back from the event loop one by one. The writer still
decides the order: it waits for the helper before it writes anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import marshal
import os
import queue
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import structlog

from taskservice.api import task_service_pb2 as pb
from taskservice.errors import AlreadyExists, DomainError, NotFound, Unavailable
from taskservice.model import now_us
from taskservice.paging import PageQuery, TaskFilter
from taskservice.store import sql
from taskservice.store.base import Change, Check, EventBounds, EventListener, NewTask, StoredEvent
from taskservice.store.counts import CountCache
from taskservice.store.migrations import migrations
from taskservice.store.taskcache import TaskCache

log = structlog.get_logger(__name__)

Op = Callable[[sqlite3.Connection], tuple[Any, list[StoredEvent]]]
_MAX_BATCH = 512
# Plain creates go to the helper process only in batches of at least this many tasks (bulk chunks):
# for the few creates of concurrent CreateTask calls, the pipe and the helper's CPU on two cores
# cost more than the GIL hand-overs they save (CreateTask 1,947-2,156 req/s through the helper
# against 2,263-2,448 without; BulkCreateTasks 15,000-15,200 tasks/s against 10,600-13,800).
_CHILD_MIN_TASKS = 64
_CHECKPOINT_EVERY_S = 0.2
_WAL_BACKSTOP_PAGES = 16_384  # 64 MiB of 4 KiB pages
_UPDATE_TASK = sql.update_task_sql(lambda _: "?")


def _qmark(_: int) -> str:
    return "?"


def _event_from_row(row: tuple[int, int, int, str, bytes, bytes | None]) -> StoredEvent:
    sequence, event_type, occurred_us, triggered_by, task, previous = row
    return StoredEvent(
        sequence=sequence,
        event_type=event_type,
        task=pb.Task.FromString(task),
        previous=pb.Task.FromString(previous) if previous is not None else None,
        occurred_us=occurred_us,
        triggered_by=triggered_by,
    )


class _Creates:
    """The op of a create whose tasks carry no request id. Only the database itself can make it fail,
    so the writer inserts all of a batch's together, in one statement per table."""

    __slots__ = ("tasks",)

    def __init__(self, tasks: list[pb.Task]) -> None:
        self.tasks = tasks

    def __call__(self, conn: sqlite3.Connection) -> tuple[list[pb.Task], list[StoredEvent]]:
        return list(self.tasks), _insert_created(conn, self.tasks)


class _Child:
    """The helper process (`sqlite_child.py`) that commits a batch's plain creates for the writer
    thread: the thread sends the encoded tasks and waits for the commit without holding the GIL, so
    the inserts no longer take the GIL back from the event loop after every statement."""

    def __init__(self, path: str, durable: bool) -> None:
        self._command = [
            sys.executable,
            "-m",
            "taskservice.store.sqlite_child",
            path,
            "1" if durable else "0",
        ]
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def insert(self, tasks: list[pb.Task]) -> list[StoredEvent] | None:
        """The tasks' CREATED events once committed, or None when the helper could not commit them
        (the writer then inserts them itself, and a failing one fails alone as ever)."""
        occurred = now_us()
        try:
            if self._proc is None:
                self.start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            _write_frame(proc.stdin, (occurred, [task.SerializeToString() for task in tasks]))
            answer = _read_frame(proc.stdout)
        except (OSError, ValueError) as error:
            answer, reason = None, str(error)
        else:
            reason = "it exited"
        if answer is None:
            log.warning("store.helper_lost", error=reason)
            self.stop()
            return None
        status, value = answer
        if status != "ok":
            log.warning("store.helper_failed", error=value)
            return None
        return [
            StoredEvent(value + i, pb.EVENT_TYPE_CREATED, task, None, occurred, task.created_by)
            for i, task in enumerate(tasks)
        ]


def _write_frame(stream: IO[bytes], value: Any) -> None:
    """`value` to `stream` as one frame: a 4-byte big-endian length, then its `marshal` encoding."""
    payload = marshal.dumps(value)
    stream.write(struct.pack(">I", len(payload)) + payload)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> Any:
    """One length-prefixed marshal frame from `stream`, or None at its end."""
    header = _read_exactly(stream, 4)
    if header is None:
        return None
    payload = _read_exactly(stream, struct.unpack(">I", header)[0])
    return None if payload is None else marshal.loads(payload)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class _Writer:
    """The single writer thread and its group commit."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        loop: asyncio.AbstractEventLoop,
        on_commit: Callable[[list[StoredEvent]], None],
        child: _Child | None = None,
    ) -> None:
        self._connect = connect
        self._child = child
        self._loop = loop
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[tuple[Op, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def submit(self, op: Op) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((op, future))
        return future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        if self._child is not None:
            self._child.start()
        self._started.set()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(conn, batch)
        if self._child is not None:
            self._child.stop()
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
        """Commit the batch and answer it. Its plain creates go first, through the helper process
        when there is one; the other writes follow in one transaction of this thread's."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        events: list[StoredEvent] = []
        creates = [(op, future) for op, future in batch if isinstance(op, _Creates)]
        tasks = [task for create, _ in creates for task in create.tasks]
        if self._child is not None and len(tasks) >= _CHILD_MIN_TASKS:
            created = self._child.insert(tasks)
            if created is not None:
                outcomes = [(future, list(create.tasks), None) for create, future in creates]
                events = created
                batch = [(op, future) for op, future in batch if not isinstance(op, _Creates)]
        if batch:
            more, more_events = self._transaction(conn, batch)
            outcomes += more
            events += more_events
        with contextlib.suppress(RuntimeError):  # RuntimeError: the loop is gone, nobody is waiting
            self._loop.call_soon_threadsafe(self._deliver, outcomes, events)

    def _transaction(
        self, conn: sqlite3.Connection, batch: list[tuple[Op, asyncio.Future[Any]]]
    ) -> tuple[list[tuple[asyncio.Future[Any], Any, BaseException | None]], list[StoredEvent]]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes, events = self._apply(conn, batch, savepoints=False)
            if outcomes is None:  # an op failed half-way: start over, each op in its own savepoint
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes, events = self._apply(conn, batch, savepoints=True)
                assert outcomes is not None
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store.commit_failed", error=str(exc), batch=len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = Unavailable("the task store could not commit the change; retry")
            outcomes = [(future, None, failure) for _, future in batch]
            events = []
        return outcomes, events

    @staticmethod
    def _apply(
        conn: sqlite3.Connection, batch: list[tuple[Op, asyncio.Future[Any]]], *, savepoints: bool
    ) -> tuple[list[tuple[asyncio.Future[Any], Any, BaseException | None]] | None, list[StoredEvent]]:
        """Run the batch's ops in the open transaction. Without savepoints (the fast path: a savepoint
        and its release cost about a third of a small write), an op that fails before it changed a row
        (the usual case: not found, wrong version, no permission) is simply answered with its error;
        one that fails after changing rows makes this return None, and the caller redoes the batch
        with each op in a savepoint it can roll back alone. On the fast path the batch's plain creates
        (from many calls) are inserted together, first: a new task cannot touch another op's rows."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        events: list[StoredEvent] = []
        if not savepoints:
            creates = [(op, future) for op, future in batch if isinstance(op, _Creates)]
            if len(creates) > 1:
                try:
                    events = _insert_created(conn, [task for create, _ in creates for task in create.tasks])
                except Exception:
                    return None, []  # the redo, op by op, tells which one failed
                for create, future in creates:
                    outcomes.append((future, list(create.tasks), None))
                batch = [(op, future) for op, future in batch if not isinstance(op, _Creates)]
        for op, future in batch:
            if savepoints:
                conn.execute("SAVEPOINT op")
            changes = conn.total_changes
            try:
                value, op_events = op(conn)
            except Exception as exc:
                if savepoints:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                elif conn.total_changes != changes:
                    return None, []
                outcomes.append((future, None, exc))
            else:
                if savepoints:
                    conn.execute("RELEASE op")
                outcomes.append((future, value, None))
                events.extend(op_events)
        return outcomes, events

    def _deliver(
        self, outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]], events: list[StoredEvent]
    ) -> None:
        if events:
            self._on_commit(events)
        for future, value, exc in outcomes:
            if future.cancelled():
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(value)


class _Checkpointer:
    """Copies committed pages from the WAL back into the database file, from its own thread and
    connection. Left to the writer (SQLite's automatic checkpoint every 1,000 pages), that copy and
    the database file's fsync landed inside a commit several times a second under load, and every
    write in that batch waited for it. A PASSIVE checkpoint never blocks the writer; the writer
    still checkpoints by itself should the WAL ever pass `_WAL_BACKSTOP_PAGES`."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval: float) -> None:
        self._connect = connect
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stopping.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's own checkpoint remains as a backstop
                    log.warning("store.checkpoint_failed", error=str(exc))
        finally:
            conn.close()


class SQLiteStore:
    """TaskStore on SQLite. `path=None` makes a throw-away store in a temporary folder."""

    def __init__(self, path: str | None, *, durable: bool = True) -> None:
        self._tmpdir = tempfile.mkdtemp(prefix="taskservice-") if path is None else None
        self.path = path if path is not None else str(Path(self._tmpdir or ".") / "tasks.db")
        self._durable = durable and path is not None
        self._listeners: list[EventListener] = []
        self._writer: _Writer | None = None
        self._checkpointer: _Checkpointer | None = None
        self._reader: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self._counts = CountCache()
        self._cache = TaskCache()

    # -- life cycle ---------------------------------------------------------------------------

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        return _connect(self.path, durable=self._durable, readonly=readonly)

    async def open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._migrate)
        child = _Child(self.path, self._durable)
        self._writer = _Writer(self._connect, asyncio.get_running_loop(), self._publish, child)
        self._writer.start()
        self._checkpointer = _Checkpointer(self._connect, _CHECKPOINT_EVERY_S)
        self._checkpointer.start()
        self._reader = self._connect(readonly=True)
        self._file_id = _file_id(self.path)
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
                    for statement in _statements(migration.sql):
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
        finally:
            conn.close()

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)
            self._writer = None
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
        self._counts.apply(events)
        self._cache.apply(events)
        for listener in self._listeners:
            listener(events)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._reader is None:
            raise Unavailable("the task store is closed")
        return self._reader

    def _write(self, op: Op) -> asyncio.Future[Any]:
        if self._writer is None:
            raise Unavailable("the task store is closed")
        return self._writer.submit(op)

    async def ping(self) -> None:
        """Readable, and still the file at `path`: open handles keep working on a database file that
        was deleted or moved away (a lost volume), but nothing written there would survive a restart."""
        try:
            self._db.execute("SELECT 1 FROM tasks LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise Unavailable(f"the task store is not readable: {exc}") from None
        try:
            same_file = _file_id(self.path) == self._file_id
        except OSError as exc:
            raise Unavailable(f"the database file is gone: {exc}") from None
        if not same_file:
            raise Unavailable(f"{self.path} is no longer the database file this server opened")

    async def secret(self, name: str) -> bytes:
        key = f"secret:{name}"
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:

            def create(conn: sqlite3.Connection) -> tuple[None, list[StoredEvent]]:
                conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, os.urandom(32)))
                return None, []

            await self._write(create)
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return bytes(row[0])

    # -- writes -------------------------------------------------------------------------------

    async def create_many(self, items: list[NewTask]) -> list[pb.Task | DomainError]:
        if not any(item.request_id for item in items):
            plain: list[pb.Task | DomainError] = await self._write(_Creates([item.task for item in items]))
            return plain

        def op(conn: sqlite3.Connection) -> tuple[list[pb.Task | DomainError], list[StoredEvent]]:
            results: list[pb.Task | DomainError] = []
            events: list[StoredEvent] = []
            pending: list[pb.Task] = []  # inserted together: one executemany per table, not per task
            for item in items:
                task = item.task
                if not item.request_id:
                    pending.append(task)
                    results.append(task)
                    continue
                earlier = _earlier_request(conn, item)
                if earlier is not None:
                    results.append(earlier)
                    continue
                pending.append(task)
                events += _insert_created(conn, pending)
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
            events += _insert_created(conn, pending)
            return results, events

        result: list[pb.Task | DomainError] = await self._write(op)
        return result

    async def update(self, task_id: str, change: Change, triggered_by: str) -> pb.Task:
        def op(conn: sqlite3.Connection) -> tuple[pb.Task, list[StoredEvent]]:
            current = _load(conn, task_id)
            updated = change(current)
            if updated is None:
                return current, []
            conn.execute(_UPDATE_TASK, sql.update_task_values(updated))
            if list(updated.labels) != list(current.labels):
                conn.execute("DELETE FROM task_labels WHERE task_id = ?", (task_id,))
                _insert_labels(conn, updated)
            return updated, [_append_event(conn, pb.EVENT_TYPE_UPDATED, updated, current, triggered_by)]

        result: pb.Task = await self._write(op)
        return result

    async def delete(self, task_id: str, check: Check, triggered_by: str) -> pb.Task:
        def op(conn: sqlite3.Connection) -> tuple[pb.Task, list[StoredEvent]]:
            current = _load(conn, task_id)
            check(current)
            conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
            conn.execute("DELETE FROM task_labels WHERE task_id = ?", (task_id,))
            return current, [_append_event(conn, pb.EVENT_TYPE_DELETED, current, None, triggered_by)]

        result: pb.Task = await self._write(op)
        return result

    async def prune(self, events_before_us: int, keep_events: int, keys_before_us: int) -> int:
        def op(conn: sqlite3.Connection) -> tuple[int, list[StoredEvent]]:
            head = _head(conn)
            by_time = conn.execute(
                "SELECT coalesce(max(sequence), 0) FROM events WHERE occurred_us < ?", (events_before_us,)
            ).fetchone()[0]
            cut = max(by_time, head - keep_events)
            removed = conn.execute("DELETE FROM events WHERE sequence <= ?", (cut,)).rowcount
            if cut > _horizon(conn):
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('event_horizon', ?)", (str(cut).encode(),))
            conn.execute("DELETE FROM idempotency_keys WHERE created_us < ?", (keys_before_us,))
            return removed, []

        result: int = await self._write(op)
        return result

    # -- reads --------------------------------------------------------------------------------

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

    async def list_page(self, query: PageQuery) -> list[pb.Task]:
        params = sql.Params(_qmark)
        statement = sql.page_sql(query, params)
        return [pb.Task.FromString(row[0]) for row in self._db.execute(statement, params.values)]

    async def count(self, task_filter: TaskFilter, *, keep: bool = True) -> int:
        cached = self._counts.get(task_filter)
        if cached is not None:
            return cached
        params = sql.Params(_qmark)
        statement = sql.count_sql(task_filter, params)
        db = self._db
        db.execute("BEGIN")
        try:
            head = _head(db)
            value = int(db.execute(statement, params.values).fetchone()[0])
        finally:
            db.execute("COMMIT")
        if keep:
            self._counts.put(task_filter, value, head)
        return value

    async def status_counts(self) -> tuple[dict[int, int], int]:
        def read() -> tuple[dict[int, int], int]:
            conn = self._connect(readonly=True)
            try:
                conn.execute("BEGIN")
                head = _head(conn)
                rows = conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall()
                conn.execute("COMMIT")
            finally:
                conn.close()
            return {int(status): int(count) for status, count in rows}, head

        return await asyncio.to_thread(read)

    async def snapshot(self, task_filter: TaskFilter) -> tuple[list[pb.Task], int]:
        params = sql.Params(_qmark)
        statement = sql.snapshot_sql(task_filter, params)
        db = self._db
        db.execute("BEGIN")
        try:
            head = _head(db)
            tasks = [pb.Task.FromString(row[0]) for row in db.execute(statement, params.values)]
        finally:
            db.execute("COMMIT")
        return tasks, head

    async def events_after(self, sequence: int, limit: int) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT sequence, event_type, occurred_us, triggered_by, task, previous FROM events "
            "WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (sequence, limit),
        )
        return [_event_from_row(row) for row in rows]

    async def event_bounds(self) -> EventBounds:
        db = self._db
        db.execute("BEGIN")
        try:
            return EventBounds(horizon=_horizon(db), head=_head(db))
        finally:
            db.execute("COMMIT")


def _connect(path: str, *, durable: bool, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_BACKSTOP_PAGES}")  # see _Checkpointer
    if readonly:
        conn.execute("PRAGMA query_only=1")
    return conn


def _file_id(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _head(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


def _horizon(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'event_horizon'").fetchone()
    return int(bytes(row[0])) if row else 0


def _load(conn: sqlite3.Connection, task_id: str) -> pb.Task:
    row = conn.execute("SELECT body FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        raise NotFound.task(task_id)
    return pb.Task.FromString(row[0])


def _earlier_request(conn: sqlite3.Connection, item: NewTask) -> pb.Task | DomainError | None:
    row = conn.execute(
        "SELECT request_hash, task_id, response FROM idempotency_keys WHERE created_by = ? AND request_id = ?",
        (item.task.created_by, item.request_id),
    ).fetchone()
    if row is None:
        return None
    request_hash, task_id, response = row
    if bytes(request_hash) != item.request_hash:
        return AlreadyExists(
            f"request_id {item.request_id!r} was already used for a different request; use a new request_id"
        )
    current = conn.execute("SELECT body FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return pb.Task.FromString(current[0] if current else response)


def _insert_created(
    conn: sqlite3.Connection, tasks: list[pb.Task], occurred: int | None = None
) -> list[StoredEvent]:
    """Insert new tasks and their CREATED events, a few multi-row statements per table."""
    if not tasks:
        return []
    bodies = [task.SerializeToString() for task in tasks]
    _insert_rows(
        conn, _INSERT_TASKS, [sql.task_row(task, body) for task, body in zip(tasks, bodies, strict=True)]
    )
    labels = [(label, task.id) for task in tasks for label in task.labels]
    if labels:
        _insert_rows(conn, _INSERT_LABELS, labels)
    occurred = now_us() if occurred is None else occurred
    _insert_rows(
        conn,
        _INSERT_EVENTS,
        [
            (pb.EVENT_TYPE_CREATED, task.id, occurred, task.created_by, body)
            for task, body in zip(tasks, bodies, strict=True)
        ],
    )
    # One writer, inside one transaction: AUTOINCREMENT numbered these rows consecutively up to the head.
    first = _head(conn) - len(tasks) + 1
    return [
        StoredEvent(first + i, pb.EVENT_TYPE_CREATED, task, None, occurred, task.created_by)
        for i, task in enumerate(tasks)
    ]


def _insert_labels(conn: sqlite3.Connection, task: pb.Task) -> None:
    if task.labels:
        _insert_rows(conn, _INSERT_LABELS, [(label, task.id) for label in task.labels])


_INSERT_TASKS = "INSERT INTO tasks VALUES"
_INSERT_LABELS = "INSERT OR IGNORE INTO task_labels VALUES"
_INSERT_EVENTS = "INSERT INTO events (event_type, task_id, occurred_us, triggered_by, task) VALUES"
_ROWS_PER_STATEMENT = (256, 64, 16, 4, 1)


def _insert_rows(conn: sqlite3.Connection, insert: str, rows: list[tuple[Any, ...]]) -> None:
    """`insert` ... VALUES (…), (…), … for all `rows`, in statements of a few fixed sizes so each is
    prepared once and then taken from the statement cache. One statement per size rather than one
    step per row: the sqlite3 module lets go of the GIL around every step, and taking it back from a
    busy event loop can wait a whole switch interval."""
    at = 0
    for size in _ROWS_PER_STATEMENT:
        while len(rows) - at >= size:
            chunk = rows[at : at + size]
            conn.execute(_values_sql(insert, len(chunk[0]), size), [value for row in chunk for value in row])
            at += size


@functools.cache
def _values_sql(insert: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{insert} {', '.join([one] * rows)}"


def _append_event(
    conn: sqlite3.Connection, event_type: int, task: pb.Task, previous: pb.Task | None, triggered_by: str
) -> StoredEvent:
    occurred = now_us()
    cursor = conn.execute(
        "INSERT INTO events (event_type, task_id, occurred_us, triggered_by, task, previous) VALUES (?, ?, ?, ?, ?, ?)",
        (
            event_type,
            task.id,
            occurred,
            triggered_by,
            task.SerializeToString(),
            previous.SerializeToString() if previous is not None else None,
        ),
    )
    assert cursor.lastrowid is not None
    return StoredEvent(cursor.lastrowid, event_type, task, previous, occurred, triggered_by)
