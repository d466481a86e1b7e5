"""The SQLite writer's group commit: writes that share a transaction do not undo one another.

Ops run without savepoints (the fast path); one that fails before it changed a row is answered with
its error, one that fails after changing rows makes the writer redo the batch with each op in its own
savepoint. Either way the failing op leaves nothing behind and the others in its batch commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from taskservice.errors import NotFound
from taskservice.store.sqlite import SQLiteStore


def _meta_op(key: str, *, fail: str = ""):  # type: ignore[no-untyped-def]
    def op(conn: sqlite3.Connection):  # type: ignore[no-untyped-def]
        if fail == "before":
            raise NotFound(f"{key} before writing")
        conn.execute("INSERT INTO meta VALUES (?, ?)", (key, b"v"))
        if fail == "after":
            raise NotFound(f"{key} after writing")
        return key, []

    return op


async def _one_batch(store: SQLiteStore, ops) -> list[object]:  # type: ignore[no-untyped-def]
    """Submit `ops` while the writer is held inside a first op, so they commit as one batch."""
    entered, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(10)
        return None, []

    first = store._write(hold)
    await asyncio.to_thread(entered.wait, 10)
    futures = [store._write(op) for op in ops]
    release.set()
    await first
    return list(await asyncio.gather(*futures, return_exceptions=True))


def _keys(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM meta WHERE key LIKE 'k%'")}


@pytest.mark.parametrize("fail", ["before", "after"])
def test_a_failing_write_leaves_nothing_and_its_batch_commits(tmp_path: Path, fail: str) -> None:
    path = tmp_path / "tasks.db"

    async def scenario() -> list[object]:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            return await _one_batch(
                store, [_meta_op("k1"), _meta_op("k2", fail=fail), _meta_op("k3"), _meta_op("k4")]
            )
        finally:
            await store.close()

    results = asyncio.run(scenario())
    assert results[0] == "k1" and results[2] == "k3" and results[3] == "k4"
    assert isinstance(results[1], NotFound)
    assert _keys(path) == {"k1", "k3", "k4"}


def test_a_constraint_violation_fails_only_its_write(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"

    async def scenario() -> list[object]:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            return await _one_batch(store, [_meta_op("k1"), _meta_op("k1"), _meta_op("k2")])
        finally:
            await store.close()

    results = asyncio.run(scenario())
    assert results[0] == "k1" and results[2] == "k2"
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert _keys(path) == {"k1", "k2"}
