"""Group commit for the PostgreSQL store: the writes waiting on a replica share one transaction.

Every write is an op: a coroutine that reads and writes rows on the batch's connection and returns
its value and the changes it made. The writer takes every op that is waiting (a lone op does not
wait for company), runs them in one transaction, appends all their events with one bump of the
`event_log` row and one NOTIFY, commits, and only then answers each op. The event-log row lock is
what serializes writers across replicas, and it is held from the append to the COMMIT: one commit
per batch instead of one per write is what lets a second replica add write capacity.

An op that fails alone fails alone: ops run without savepoints first (a savepoint costs a round
trip); a domain error raised before the op wrote anything (not found, wrong version, no permission)
is simply that op's answer. A database error aborts the transaction, and the batch is redone with
each op in its own savepoint, so the failing op is rolled back alone and the others commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import structlog

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import DomainError, Unavailable
from taskservice.store.base import ProjectEvent, StoredEvent
from taskservice.store.faults import timed_out

log = structlog.get_logger(__name__)

Connection = Any  # asyncpg.Connection or a pool proxy of one; asyncpg ships no usable stubs
# (event type, task, task before the change, who triggered it): one event to append.
# Or a project's change (store/base.py: ProjectEvent).
EventChange = tuple[int, pb.Task, pb.Task | None, str] | ProjectEvent
Op = Callable[[Connection], Awaitable[tuple[Any, list[EventChange]]]]
Outcome = tuple[Any, BaseException | None]
T = TypeVar("T")


@dataclass(slots=True)
class PlainCreates:
    """The op of a create whose tasks carry no request id. Only the database itself can make it
    fail, so the writer inserts all of a batch's plain creates together."""

    tasks: list[pb.Task]


@dataclass(frozen=True, slots=True)
class WriterHooks:
    """What the writer needs from its store: a connection for one batch, how to insert plain
    creates, how to append events (the batch's last statement), how to tell a connection failure
    from a database error, and where committed events go."""

    connection: Callable[[], contextlib.AbstractAsyncContextManager[Connection]]
    insert_created: Callable[[Connection, list[pb.Task]], Awaitable[None]]
    append: Callable[[Connection, list[EventChange]], Awaitable[list[StoredEvent]]]
    is_connection_error: Callable[[BaseException], bool]
    on_connection_error: Callable[[BaseException], None]
    deliver: Callable[[list[StoredEvent]], None]


class _Redo(Exception):
    """A database error aborted the fast path's transaction: redo the batch with savepoints."""


class GroupWriter:
    """Batches the ops submitted to it; `in_flight` batches may be open at once (the next batch's
    statements run while the previous one waits for its COMMIT)."""

    def __init__(
        self,
        hooks: WriterHooks,
        *,
        timeout: float,
        max_batch: int = 256,
        in_flight: int = 2,
        retries: int = 2,
    ) -> None:
        self._hooks = hooks
        self._timeout = timeout
        self._max_batch = max_batch
        self._retries = retries
        self._pending: list[tuple[Op | PlainCreates, asyncio.Future[Any]]] = []
        self._slots = asyncio.Semaphore(in_flight)
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="postgres-writer")

    async def run(self, op: Op | PlainCreates) -> Any:
        """Submit `op` and wait for its answer, at most the store timeout. An op still waiting for a
        batch when its caller stops waiting (timed out or cancelled) is withdrawn, so nothing of it
        is written; one already in a batch has an unknown outcome, and its caller gets UNAVAILABLE."""
        if self._closed:
            raise Unavailable("the task store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._wake.set()
        try:
            return await within(self._timeout, future)
        finally:
            if future.cancelled():
                self._pending = [(o, f) for o, f in self._pending if f is not future]

    async def stop(self) -> None:
        """Finish every op submitted so far, then refuse new ones."""
        self._closed = True
        while self._pending or self._batches:
            self._wake.set()
            await asyncio.sleep(0.01)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._slots.acquire()
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                task = asyncio.create_task(self._commit(batch))
                self._batches.add(task)
                task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("store.batch_failed", error=str(task.exception()))

    async def _commit(self, batch: list[tuple[Op | PlainCreates, asyncio.Future[Any]]]) -> None:
        """Run and commit the batch and answer its ops, within the store timeout. Retried whole while
        nothing was sent to COMMIT; answered UNAVAILABLE when the outcome of a COMMIT is unknown or
        the database did not answer in time. The ops are answered as soon as COMMIT returns, before
        the connection goes back to the pool, and never twice."""
        answered = False

        def answer(outcomes: list[Outcome], events: list[StoredEvent]) -> None:
            nonlocal answered
            answered = True
            if events:
                self._hooks.deliver(events)
            for (_, future), (value, error) in zip(batch, outcomes, strict=True):
                if future.done():  # its caller stopped waiting (store timeout or cancelled)
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)

        scope = asyncio.timeout(self._timeout)
        try:
            async with scope:
                attempt = 0
                while not answered:
                    try:
                        async with self._hooks.connection() as conn:
                            try:
                                outcomes, events = await self._transaction(conn, batch, savepoints=False)
                            except _Redo:
                                outcomes, events = await self._transaction(conn, batch, savepoints=True)
                            answer(outcomes, events)
                    except Exception as exc:
                        # Once answered, only giving the connection back failed: the batch is done.
                        if not answered and not self._retry(exc, attempt):
                            answer(self._failed(batch, _unavailable(exc)), [])
                    attempt += 1
        except TimeoutError:
            if not scope.expired():
                raise
            if not answered:
                log.warning("store.timed_out", batch=len(batch), after_s=self._timeout)
                answer(self._failed(batch, timed_out(self._timeout)), [])

    def _retry(self, exc: Exception, attempt: int) -> bool:
        """Whether a batch that failed with `exc` may run again: only when nothing was sent to
        COMMIT and the failure was the connection's or a deadlock."""
        if isinstance(exc, _Committing):
            self._hooks.on_connection_error(exc)
            return False
        if isinstance(exc, asyncpg.exceptions.TransactionRollbackError):  # deadlock, serialization
            return attempt < self._retries
        if not self._hooks.is_connection_error(exc):
            log.exception("store.batch_failed")
            return False
        self._hooks.on_connection_error(exc)
        return attempt < self._retries

    async def _transaction(
        self,
        conn: Connection,
        batch: list[tuple[Op | PlainCreates, asyncio.Future[Any]]],
        *,
        savepoints: bool,
    ) -> tuple[list[Outcome], list[StoredEvent]]:
        tx = conn.transaction()
        await tx.start()
        try:
            outcomes, changes = await self._apply(conn, batch, savepoints=savepoints)
            events = await self._hooks.append(conn, changes)
        except Exception as exc:
            # A broken or timed-out connection is closed by the store instead of rolled back.
            if not self._hooks.is_connection_error(exc):
                with contextlib.suppress(Exception):
                    await tx.rollback()
            raise
        try:
            await tx.commit()
        except Exception as exc:
            if self._hooks.is_connection_error(exc):
                raise _Committing(exc) from exc
            raise
        return outcomes, events

    async def _apply(
        self,
        conn: Connection,
        batch: list[tuple[Op | PlainCreates, asyncio.Future[Any]]],
        *,
        savepoints: bool,
    ) -> tuple[list[Outcome], list[EventChange]]:
        outcomes: list[Outcome] = []
        changes: list[EventChange] = []
        plain = [op.tasks for op, _ in batch if isinstance(op, PlainCreates)]
        if plain and not savepoints:
            tasks = [task for tasks in plain for task in tasks]
            try:
                await self._hooks.insert_created(conn, tasks)
            except asyncpg.PostgresError as exc:
                if self._hooks.is_connection_error(exc):
                    raise
                raise _Redo from exc
            changes += [(pb.EVENT_TYPE_CREATED, task, None, task.created_by) for task in tasks]
        for op, _ in batch:
            if isinstance(op, PlainCreates):
                if not savepoints:
                    outcomes.append((list(op.tasks), None))
                    continue
                op = _creates(self._hooks, op)
            try:
                if savepoints:
                    async with conn.transaction():  # a savepoint inside the batch's transaction
                        value, op_changes = await op(conn)
                else:
                    value, op_changes = await op(conn)
            except DomainError as error:
                outcomes.append((None, error))
            except asyncpg.PostgresError as exc:
                if self._hooks.is_connection_error(exc):
                    raise
                if not savepoints:
                    raise _Redo from exc
                log.warning("store.op_failed", error=type(exc).__name__, detail=str(exc)[:200])
                outcomes.append((None, Unavailable("the task store could not apply the change; retry")))
            else:
                outcomes.append((value, None))
                changes += op_changes
        return outcomes, changes

    @staticmethod
    def _failed(
        batch: list[tuple[Op | PlainCreates, asyncio.Future[Any]]], failure: Unavailable
    ) -> list[Outcome]:
        return [(None, failure) for _ in batch]


async def within(seconds: float, operation: Awaitable[T]) -> T:
    """`operation`, failed UNAVAILABLE when the database has not answered within `seconds`: a
    partition drops packets silently, and without a bound a call would wait for TCP to give up."""
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await operation
    except TimeoutError:
        if not scope.expired():
            raise
        log.warning("store.timed_out", after_s=seconds)
        raise timed_out(seconds) from None


def _unavailable(exc: BaseException) -> Unavailable:
    log.warning("store.unavailable", error=type(exc).__name__, detail=str(exc)[:200])
    return Unavailable("the task store is unavailable; retry shortly")


class _Committing(Exception):
    """The connection failed while COMMIT was in flight: the batch's outcome is unknown."""


def _creates(hooks: WriterHooks, op: PlainCreates) -> Op:
    async def run(conn: Connection) -> tuple[list[pb.Task], list[EventChange]]:
        await hooks.insert_created(conn, op.tasks)
        return list(op.tasks), [(pb.EVENT_TYPE_CREATED, task, None, task.created_by) for task in op.tasks]

    return run
