"""Group commit on PostgreSQL: the writes waiting on a replica share one transaction, a failing one
fails alone, and the event log stays gapless and in commit order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import NotFound, VersionConflict
from taskservice.domain.values import new_task_id, now_us, timestamp_from_us
from taskservice.store.base import NewTask, StoredEvent
from taskservice.store.postgres import PostgresStore
from tests.postgres import Database, require_postgres

pytestmark = pytest.mark.postgres


def _task(title: str, owner: str = "ada") -> pb.Task:
    now = timestamp_from_us(now_us())
    return pb.Task(
        id=new_task_id(),
        title=title,
        status=pb.TASK_STATUS_TODO,
        priority=pb.PRIORITY_MEDIUM,
        created_by=owner,
        version=1,
        created_at=now,
        updated_at=now,
    )


def _run(scenario: Callable[[PostgresStore, Database], Awaitable[Any]]) -> Any:
    require_postgres()
    database = Database().create()

    async def main() -> Any:
        store = PostgresStore(database.url)
        await store.open()
        try:
            return await scenario(store, database)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    finally:
        database.drop()


async def _fetch(database: Database, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(database.url, timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _commits(database: Database) -> int:
    rows = await _fetch(
        database, "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database.name
    )
    return int(rows[0][0])


def test_concurrent_writes_share_commits_and_one_failing_write_fails_alone() -> None:
    async def scenario(store: PostgresStore, database: Database) -> None:
        published: list[StoredEvent] = []
        store.subscribe(published.extend)
        (seed,) = await store.create_many([NewTask(_task("seed"))])
        assert isinstance(seed, pb.Task)

        def bump(current: pb.Task) -> pb.Task:
            updated = pb.Task()
            updated.CopyFrom(current)
            updated.title += "!"
            updated.version += 1
            return updated

        def conflict(current: pb.Task) -> pb.Task:
            raise VersionConflict(current.id, 99, current.version)

        writes: list[Awaitable[Any]] = [store.create_many([NewTask(_task(f"t{i}"))]) for i in range(40)]
        writes.append(store.update(seed.id, conflict, "ada"))
        writes.append(store.update("no-such-task", bump, "ada"))
        writes += [store.update(seed.id, bump, "ada") for _ in range(5)]
        results = await asyncio.gather(*writes, return_exceptions=True)

        assert all(isinstance(r, list) and isinstance(r[0], pb.Task) for r in results[:40])
        assert isinstance(results[40], VersionConflict)
        assert isinstance(results[41], NotFound)
        assert [r.version for r in results[42:]] == [2, 3, 4, 5, 6]  # type: ignore[union-attr]
        sequences = [event.sequence for event in published]
        assert sequences == list(range(1, 47))  # seed, 40 creates, 5 updates: gapless, in order
        stored = (await _fetch(database, "SELECT count(*) FROM tasks"))[0][0]
        assert stored == 41

    _run(scenario)


def test_a_batch_whose_insert_fails_commits_its_other_writes() -> None:
    """A duplicate id makes the batch's multi-row insert fail; the redo with savepoints fails that
    create alone."""

    async def scenario(store: PostgresStore, database: Database) -> None:
        taken = _task("taken")
        await store.create_many([NewTask(taken)])
        duplicate = pb.Task()
        duplicate.CopyFrom(taken)
        writes = [store.create_many([NewTask(_task(f"ok{i}"))]) for i in range(10)]
        writes.insert(5, store.create_many([NewTask(duplicate)]))
        results = await asyncio.gather(*writes, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1 and results[5] is failures[0]
        titles = {row[0] for row in await _fetch(database, "SELECT id FROM tasks")}
        assert len(titles) == 11

    _run(scenario)


def test_many_concurrent_creates_take_far_fewer_commits_than_writes() -> None:
    async def scenario(store: PostgresStore, database: Database) -> tuple[int, int]:
        before = await _commits(database)
        await asyncio.gather(*(store.create_many([NewTask(_task(f"t{i}"))]) for i in range(200)))
        await asyncio.sleep(0.6)  # pg_stat_database is refreshed at most every 500 ms
        return before, await _commits(database)

    before, after = _run(scenario)
    assert after - before < 100, (before, after)
