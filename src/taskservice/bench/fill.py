"""Databases of N tasks, written straight into SQLite through the store's own schema.

Going through the RPC would take minutes for a million tasks; the rows written here are exactly
what the store writes (same migrations, same columns, same protobuf body), so the server cannot
tell them apart. Filled databases are cached by size and schema, because a million tasks take a
while to generate and never change.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import sqlite3
from pathlib import Path

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.values import new_task_id
from taskservice.store import sql
from taskservice.store.migrations import migrations
from taskservice.store.sqlite import SQLiteStore

OWNER = "bench"
LABELS = tuple(f"label-{i}" for i in range(20))
_STATUSES = (pb.TASK_STATUS_TODO, pb.TASK_STATUS_IN_PROGRESS, pb.TASK_STATUS_DONE, pb.TASK_STATUS_CANCELLED)
_PRIORITIES = (pb.PRIORITY_LOW, pb.PRIORITY_MEDIUM, pb.PRIORITY_HIGH, pb.PRIORITY_CRITICAL)
_START_US = 1_700_000_000 * 1_000_000
_CHUNK = 20_000


def schema_fingerprint() -> str:
    """Changes whenever a migration does, so a cached database never outlives its schema."""
    text = "".join(f"{m.version}{m.name}{m.sql}" for m in migrations("sqlite"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def filled_database(cache_dir: Path, count: int) -> Path:
    """The path of a database holding `count` tasks owned by `OWNER`, generated on first use."""
    path = cache_dir / f"tasks-{count}-{schema_fingerprint()}.db"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        for stale in cache_dir.glob(partial.name + "*"):
            stale.unlink()
        generate(partial, count)
        partial.rename(path)
    return path


def copy_database(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def generate(path: Path, count: int, seed: int = 7) -> None:
    asyncio.run(_migrate(path))
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA journal_mode=WAL")
    try:
        for start in range(0, count, _CHUNK):
            tasks: list[tuple[object, ...]] = []
            labels: list[tuple[str, str]] = []
            for i in range(start, min(start + _CHUNK, count)):
                task = _task(rng, i)
                tasks.append(sql.task_row(task))  # the store's own column order
                labels.extend((label, task.id) for label in task.labels)
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO tasks VALUES ({', '.join('?' * len(tasks[0]))})", tasks)
            conn.executemany("INSERT OR IGNORE INTO task_labels VALUES (?, ?)", labels)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def _migrate(path: Path) -> None:
    store = SQLiteStore(str(path), durable=False)
    await store.open()
    await store.close()


def _task(rng: random.Random, i: int) -> pb.Task:
    created_us = _START_US + i * 1000
    task = pb.Task(
        id=new_task_id(),
        title=f"generated task {i}",
        description="a task the benchmark wrote straight into the database",
        status=rng.choice(_STATUSES),
        priority=rng.choice(_PRIORITIES),
        labels=rng.sample(LABELS, 2),
        created_by=OWNER,
        assigned_to="someone-else" if i % 10 == 0 else "",
        version=1,
    )
    task.created_at.FromMicroseconds(created_us)
    task.updated_at.FromMicroseconds(created_us)
    return task
