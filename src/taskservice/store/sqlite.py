"""The embedded store: SQLite in WAL mode, durable, with group commit.

Writes are queued to `_Writer`, which takes every write that is waiting, runs them on the event loop
in one transaction (a failing write is answered alone; see `_apply`), and has a worker thread commit
it with a single fsync; only then are they answered: a write is acknowledged only once it is on
disk, and concurrent writers share the cost of the sync. Commit order is sequence order, because
batches run one at a time. Reads run on the event loop on a read-only connection: WAL lets them
proceed during commits, and a primary-key lookup costs less than handing it to a thread; a task read
once is then answered from `TaskCache`, which committed events keep current.

Big batches of plain creates (bulk chunks) are committed by a helper process (`sqlite_child.py`):
the worker thread hands it the encoded tasks and waits, without the GIL, for the commit, so the
inserts' statements stop taking the GIL back from the event loop one by one. Nothing else is
written meanwhile, so the order holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import marshal
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import structlog

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import AlreadyExists, DomainError, NotFound, Unavailable
from taskservice.domain.paging import PageQuery, TaskFilter
from taskservice.domain.values import now_us
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
# Once the event loop is saturated and writes queue up, a batch waits up to _GATHER_S after the
# previous one was answered (or until _GATHER_ENOUGH writes wait) so that more share its fsync.
_GATHER_S = 0.008
_GATHER_ENOUGH = 128
_LOAD_WINDOW_S = 0.1
_SATURATED_BUSY = 0.7
_CHECKPOINT_EVERY_S = 0.2
_PR_SET_NAME = 15
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
    """The helper process (`sqlite_child.py`) that commits a big batch's plain creates for the
    writer: its worker thread sends the encoded tasks and waits for the commit without holding the
    GIL, so the inserts do not take the GIL back from the event loop after every statement."""

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


class _LoopLoad:
    """Whether the event loop's thread was busy for most of the last window: then it, not the disk,
    limits throughput, and fewer, bigger batches leave it more time (an fsync and its batch cost
    the process about 0.5-1 ms of CPU on this VM, whatever the batch's size)."""

    __slots__ = ("_cpu", "_saturated", "_since")

    def __init__(self) -> None:
        self._since = time.monotonic()
        self._cpu = time.thread_time()
        self._saturated = False

    def saturated(self) -> bool:
        now = time.monotonic()
        if now - self._since >= _LOAD_WINDOW_S:
            cpu = time.thread_time()
            self._saturated = (cpu - self._cpu) / (now - self._since) >= _SATURATED_BUSY
            self._since, self._cpu = now, cpu
        return self._saturated


class _Writer:
    """Group commit. A batch (every write waiting, up to `_MAX_BATCH`) runs on the event loop, in
    one transaction, and a worker thread commits it: with synchronous=FULL the COMMIT writes the
    WAL, fsyncs it and only then makes the batch visible to readers, so nothing is seen before it is
    durable. The batch's writes are answered and its events published once the COMMIT returns;
    meanwhile the next writes gather into the next batch. The loop runs the statements itself: a
    writer thread running them took the GIL back from the loop after every statement.

    When the loop itself is saturated and writes are queueing (some arrived during the last commit),
    a batch waits up to `_GATHER_S` for more writes to share its fsync (see `_LoopLoad`); a lone
    write, such as a create now and then on a server busy streaming, does not wait. Batches of at
    least `_CHILD_MIN_TASKS` plain creates (bulk chunks) go to the helper process, from the worker
    thread, and so does a batch that finds the database locked by another process: the loop's
    connection never waits for a lock."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        loop: asyncio.AbstractEventLoop,
        on_commit: Callable[[list[StoredEvent]], None],
        child: _Child | None = None,
        *,
        durable: bool = True,
    ) -> None:
        self._connect = connect
        self._child = child
        self._loop = loop
        self._on_commit = on_commit
        self._durable = durable  # COMMIT syncs: it runs on the worker thread
        self._conn: sqlite3.Connection | None = None  # the loop's; never waits for a lock
        self._thread_conn: sqlite3.Connection | None = None  # the worker's: waits for locks
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="sqlite-writer", initializer=_name_thread, initargs=("sqlite-writer",)
        )
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._busy = False  # a batch is between its start and its answers
        self._idle = asyncio.Event()
        self._idle.set()
        self._load = _LoopLoad()
        self._gathering: asyncio.TimerHandle | None = None  # the next batch waits for company
        self._closed = False

    def start(self) -> None:
        self._conn = self._connect()
        self._conn.execute("PRAGMA busy_timeout=0")
        self._thread_conn = self._connect()
        if self._child is not None:
            self._child.start()

    def submit(self, op: Op) -> asyncio.Future[Any]:
        if self._closed:
            raise Unavailable("the task store is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((op, future))
        if not self._busy:
            self._busy = True
            self._idle.clear()
            self._loop.call_soon(self._next)
        elif self._gathering is not None and len(self._pending) >= _GATHER_ENOUGH:
            self._gathering.cancel()
            self._gathering = None
            self._loop.call_soon(self._next)
        return future

    async def stop(self) -> None:
        """Finish every write submitted so far, then refuse new ones and close."""
        while self._busy:
            await self._idle.wait()
        self._closed = True
        await self._loop.run_in_executor(self._pool, self._close_thread_side)
        self._pool.shutdown()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _close_thread_side(self) -> None:
        if self._child is not None:
            self._child.stop()
        if self._thread_conn is not None:
            self._thread_conn.close()
            self._thread_conn = None

    def _next(self) -> None:
        """Start the next batch, or go idle."""
        self._gathering = None
        if not self._pending or self._conn is None:
            self._busy = False
            self._idle.set()
            return
        batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
        try:
            self._start(batch, self._conn)
        except Exception:  # a bug, not a database error (those are answered): never stall
            log.exception("store.batch_failed", batch=len(batch))
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._fail(batch)

    def _start(self, batch: list[tuple[Op, asyncio.Future[Any]]], conn: sqlite3.Connection) -> None:
        creates = sum(len(op.tasks) for op, _ in batch if isinstance(op, _Creates))
        if self._child is not None and creates >= _CHILD_MIN_TASKS:
            self._in_thread(batch)
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            self._in_thread(batch)  # another process holds the lock: wait for it off the loop
            return
        outcomes, events = self._transaction(conn, batch, begun=True, commit=not self._durable)
        if not conn.in_transaction:  # committed (not durable: nothing to sync), or failed
            self._finish(outcomes, events)
            return
        self._in_thread(batch, _commit, conn, outcomes, events)

    def _fail(self, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
        failure = Unavailable("the task store could not commit the change; retry")
        self._finish([(future, None, failure) for _, future in batch], [])

    def _in_thread(
        self, batch: list[tuple[Op, asyncio.Future[Any]]], work: Callable[..., Any] | None = None, *args: Any
    ) -> None:
        """Run `work(*args)` (by default: commit the whole batch) on the worker thread, then answer
        the batch with the outcomes and events it returns, or fail it if it raised."""

        def done(finished: asyncio.Future[Any]) -> None:
            error = finished.exception()
            if error is not None:
                log.error("store.commit_failed", error=str(error), batch=len(batch))
                self._fail(batch)
            else:
                self._finish(*finished.result())

        if work is None:
            work, args = self._write_batch, (batch,)
        self._loop.run_in_executor(self._pool, work, *args).add_done_callback(done)

    def _finish(
        self, outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]], events: list[StoredEvent]
    ) -> None:
        self._deliver(outcomes, events)
        if 0 < len(self._pending) < _GATHER_ENOUGH and self._load.saturated():
            self._gathering = self._loop.call_later(_GATHER_S, self._next)
        else:
            self._loop.call_soon(self._next)

    def _write_batch(
        self, batch: list[tuple[Op, asyncio.Future[Any]]]
    ) -> tuple[list[tuple[asyncio.Future[Any], Any, BaseException | None]], list[StoredEvent]]:
        """Write and commit the whole batch from the worker thread (the loop's connection did not
        start it). Its plain creates go first, through the helper process when there is one; the
        other writes follow in one transaction of this thread's."""
        conn = self._thread_conn
        assert conn is not None
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
        return outcomes, events

    def _transaction(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[Op, asyncio.Future[Any]]],
        *,
        begun: bool = False,
        commit: bool = True,
    ) -> tuple[list[tuple[asyncio.Future[Any], Any, BaseException | None]], list[StoredEvent]]:
        """Run the batch in one transaction and commit it, or leave it open (`commit=False`) for the
        caller to commit. A database error rolls it back and fails every write of the batch."""
        try:
            if not begun:
                conn.execute("BEGIN IMMEDIATE")
            outcomes, events = self._apply(conn, batch, savepoints=False)
            if outcomes is None:  # an op failed half-way: start over, each op in its own savepoint
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes, events = self._apply(conn, batch, savepoints=True)
                assert outcomes is not None
            if commit:
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
        _name_thread("sqlite-ckpt")
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
        self._published = 0  # the last event sequence handed to listeners

    # -- life cycle ---------------------------------------------------------------------------

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        return _connect(self.path, durable=self._durable, readonly=readonly)

    async def open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._migrate)
        child = _Child(self.path, self._durable)
        loop = asyncio.get_running_loop()
        self._writer = _Writer(self._connect, loop, self._publish, child, durable=self._durable)
        self._writer.start()
        self._checkpointer = _Checkpointer(self._connect, _CHECKPOINT_EVERY_S)
        self._checkpointer.start()
        self._reader = self._connect(readonly=True)
        self._file_id = _file_id(self.path)
        self._published = _head(self._reader)
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
            await self._writer.stop()
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
        self._published = events[-1].sequence
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
        """The head is the last event published, not the last committed: a batch is readable from
        the moment its COMMIT returns on the worker thread, a moment before the event loop answers
        its writes and publishes its events. A watch that starts in between must still receive
        them, so it may not take them for events that came before it."""
        db = self._db
        db.execute("BEGIN")
        try:
            return EventBounds(horizon=_horizon(db), head=min(_head(db), self._published))
        finally:
            db.execute("COMMIT")


def _name_thread(name: str) -> None:
    """Give the calling thread `name` in the OS (15 bytes at most), as `top -H`, `ps -L` and
    /proc/PID/task/*/comm show it; Python's own thread names stay inside Python."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _commit(
    conn: sqlite3.Connection, outcomes: Any, events: list[StoredEvent]
) -> tuple[Any, list[StoredEvent]]:
    """COMMIT the open transaction (in WAL mode with synchronous=FULL: write the WAL, fsync it, and
    only then make the transaction visible to readers), and pass its outcomes and events on; roll it
    back if that fails."""
    try:
        conn.execute("COMMIT")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes, events


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
