"""Group commit for the SQLite store: the writer, its batches, and the probe that tells it when to gather."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import DomainError, Unavailable
from taskservice.store.base import StoredEvent
from taskservice.store.faults import StoreFaults
from taskservice.store.sqlite.bulk_process import BulkProcess
from taskservice.store.sqlite.checkpointer import name_thread
from taskservice.store.sqlite.statements import insert_created

log = structlog.get_logger(__name__)

Op = Callable[[sqlite3.Connection], tuple[Any, list[StoredEvent]]]
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


class PlainCreates:
    """The op of a create whose tasks carry no request id. Only the database itself can make it fail,
    so the writer inserts all of a batch's together, in one statement per table."""

    __slots__ = ("tasks",)

    def __init__(self, tasks: list[pb.Task]) -> None:
        self.tasks = tasks

    def __call__(self, conn: sqlite3.Connection) -> tuple[list[pb.Task], list[StoredEvent]]:
        return list(self.tasks), insert_created(conn, self.tasks)


def commit_transaction(
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


class LoopLoad:
    """Whether the event loop's thread was busy for most of the last window: then it, not the disk,
    limits throughput, and fewer, bigger batches leave it more time (an fsync and its batch cost
    the process a fixed amount of CPU, whatever the batch's size;
    docs/decisions/0001-group-commit-on-sqlite.md)."""

    __slots__ = ("_busy", "_cpu", "_saturated", "_since", "_window_s")

    def __init__(self, window_s: float = 0.1, busy: float = 0.7) -> None:
        self._window_s = window_s
        self._busy = busy
        self._since = time.monotonic()
        self._cpu = time.thread_time()
        self._saturated = False

    def saturated(self) -> bool:
        now = time.monotonic()
        if now - self._since >= self._window_s:
            cpu = time.thread_time()
            self._saturated = (cpu - self._cpu) / (now - self._since) >= self._busy
            self._since, self._cpu = now, cpu
        return self._saturated


class LoadProbe(Protocol):
    def saturated(self) -> bool:
        """Whether the event loop is too busy for a batch to start at once."""


@dataclass(frozen=True, slots=True)
class WriterTuning:
    """How the writer batches. `load` makes the probe that says when the event loop is saturated
    (then a batch waits `gather_s` for company, or until `gather_enough` writes wait); `commit`
    commits an open transaction on the worker thread. Both are arguments so a test can observe
    or steer them without patching the module."""

    max_batch: int = 512
    # Fewer plain creates than this stay in this process: for the few creates of concurrent calls,
    # the pipe and the bulk process's CPU cost more than the GIL hand-overs they save
    # (docs/decisions/0002-bulk-helper-process.md).
    bulk_process_min_tasks: int = 64
    gather_s: float = 0.008
    gather_enough: int = 128
    load: Callable[[], LoadProbe] = field(default=LoopLoad)
    commit: Callable[..., tuple[Any, list[StoredEvent]]] = field(default=commit_transaction)


class Writer:
    """Group commit. A batch (every write waiting, up to `tuning.max_batch`) runs on the event loop, in
    one transaction, and a worker thread commits it: with synchronous=FULL the COMMIT writes the
    WAL, fsyncs it and only then makes the batch visible to readers, so nothing is seen before it is
    durable. The batch's writes are answered and its events published once the COMMIT returns;
    meanwhile the next writes gather into the next batch. The loop runs the statements itself: a
    writer thread running them took the GIL back from the loop after every statement
    (docs/decisions/0001-group-commit-on-sqlite.md).

    When the loop itself is saturated and writes are queueing (some arrived during the last commit),
    a batch waits up to `tuning.gather_s` for more writes to share its fsync (see `LoopLoad`); a lone
    write, such as a create now and then on a server busy streaming, does not wait. Batches of at
    least `tuning.bulk_process_min_tasks` plain creates (bulk chunks) go to the bulk process, from the worker
    thread, and so does a batch that finds the database locked by another process: the loop's
    connection never waits for a lock."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        loop: asyncio.AbstractEventLoop,
        on_commit: Callable[[list[StoredEvent]], None],
        bulk: BulkProcess | None = None,
        *,
        durable: bool = True,
        tuning: WriterTuning | None = None,
        faults: StoreFaults | None = None,
    ) -> None:
        self._tuning = tuning or WriterTuning()
        self._faults = faults or StoreFaults()  # a failed commit's kind, and the next success
        self._commit = self._tuning.commit
        self._connect = connect
        self._bulk = bulk
        self._loop = loop
        self._on_commit = on_commit
        self._durable = durable  # COMMIT syncs: it runs on the worker thread
        self._conn: sqlite3.Connection | None = None  # the loop's; never waits for a lock
        self._thread_conn: sqlite3.Connection | None = None  # the worker's: waits for locks
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="sqlite-writer", initializer=name_thread, initargs=("sqlite-writer",)
        )
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._busy = False  # a batch is between its start and its answers
        self._idle = asyncio.Event()
        self._idle.set()
        self._load = self._tuning.load()
        self._gathering: asyncio.TimerHandle | None = None  # the next batch waits for company
        self._closed = False

    @property
    def bulk_process(self) -> BulkProcess | None:
        return self._bulk

    @property
    def queued(self) -> int:
        """Writes submitted and not yet taken into a batch."""
        return len(self._pending)

    @property
    def gathering(self) -> bool:
        """The next batch is waiting for more writes to share its commit."""
        return self._gathering is not None

    def start(self) -> None:
        self._conn = self._connect()
        self._conn.execute("PRAGMA busy_timeout=0")
        self._thread_conn = self._connect()
        if self._bulk is not None:
            self._bulk.start()

    def submit(self, op: Op) -> asyncio.Future[Any]:
        if self._closed:
            raise Unavailable("the task store is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((op, future))
        if not self._busy:
            self._busy = True
            self._idle.clear()
            self._loop.call_soon(self._next)
        elif self._gathering is not None and len(self._pending) >= self._tuning.gather_enough:
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
        if self._bulk is not None:
            self._bulk.stop()
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
        batch, self._pending = (
            self._pending[: self._tuning.max_batch],
            self._pending[self._tuning.max_batch :],
        )
        try:
            self._start(batch, self._conn)
        except Exception:  # a bug, not a database error (those are answered): never stall
            log.exception("store.batch_failed", batch=len(batch))
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._fail(batch)

    def _start(self, batch: list[tuple[Op, asyncio.Future[Any]]], conn: sqlite3.Connection) -> None:
        creates = sum(len(op.tasks) for op, _ in batch if isinstance(op, PlainCreates))
        if self._bulk is not None and creates >= self._tuning.bulk_process_min_tasks:
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
        self._in_thread(batch, self._commit, conn, outcomes, events)

    def _fail(self, batch: list[tuple[Op, asyncio.Future[Any]]], error: BaseException | None = None) -> None:
        """Answer every write of the batch with the failure (classified when it is the database's)."""
        failure: DomainError = Unavailable("the task store could not commit the change; retry")
        if isinstance(error, sqlite3.Error):
            failure = self._faults.sqlite(error, writing=True)
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
                self._fail(batch, error)
            else:
                self._finish(*finished.result())

        if work is None:
            work, args = self._write_batch, (batch,)
        self._loop.run_in_executor(self._pool, work, *args).add_done_callback(done)

    def _finish(
        self, outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]], events: list[StoredEvent]
    ) -> None:
        self._deliver(outcomes, events)
        if 0 < len(self._pending) < self._tuning.gather_enough and self._load.saturated():
            self._gathering = self._loop.call_later(self._tuning.gather_s, self._next)
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
        creates = [(op, future) for op, future in batch if isinstance(op, PlainCreates)]
        tasks = [task for create, _ in creates for task in create.tasks]
        if self._bulk is not None and len(tasks) >= self._tuning.bulk_process_min_tasks:
            created = self._bulk.insert(tasks)
            if created is not None:
                outcomes = [(future, list(create.tasks), None) for create, future in creates]
                events = created
                batch = [(op, future) for op, future in batch if not isinstance(op, PlainCreates)]
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
            failure = self._faults.sqlite(exc, writing=True)
            outcomes = [(future, None, failure) for _, future in batch]
            events = []
        return outcomes, events

    @staticmethod
    def _apply(
        conn: sqlite3.Connection, batch: list[tuple[Op, asyncio.Future[Any]]], *, savepoints: bool
    ) -> tuple[list[tuple[asyncio.Future[Any], Any, BaseException | None]] | None, list[StoredEvent]]:
        """Run the batch's ops in the open transaction. Without savepoints (the fast path: a savepoint
        and its release cost a sizeable share of a small write), an op that fails before it changed a row
        (the usual case: not found, wrong version, no permission) is simply answered with its error;
        one that fails after changing rows makes this return None, and the caller redoes the batch
        with each op in a savepoint it can roll back alone. On the fast path the batch's plain creates
        (from many calls) are inserted together, first: a new task cannot touch another op's rows."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        events: list[StoredEvent] = []
        if not savepoints:
            creates = [(op, future) for op, future in batch if isinstance(op, PlainCreates)]
            if len(creates) > 1:
                try:
                    events = insert_created(conn, [task for create, _ in creates for task in create.tasks])
                except Exception:
                    return None, []  # the redo, op by op, tells which one failed
                for create, future in creates:
                    outcomes.append((future, list(create.tasks), None))
                batch = [(op, future) for op, future in batch if not isinstance(op, PlainCreates)]
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
        if any(exc is None for _, _, exc in outcomes):
            self._faults.wrote()  # a transaction committed: writes can succeed
        for future, value, exc in outcomes:
            if future.cancelled():
                continue
            if isinstance(exc, sqlite3.Error):  # an op's own statement failed: say what kind of failure
                exc = self._faults.sqlite(exc, writing=True)
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(value)
