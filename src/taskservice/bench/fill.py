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
PROJECTS = tuple(f"project-{i}" for i in range(8))
# Title words for full-text queries: a common word is in one task of 20 whatever the size; a topic
# word (`topic<n>`) in about 50 tasks, because the vocabulary grows with the store, as real text does.
COMMON_WORDS = ("release", "login", "invoice", "deploy", "report", "search", "mobile", "billing", "export",
                "import", "backup", "alert", "cache", "queue", "schema", "audit", "upload", "email", "theme",
                "budget")  # fmt: skip
TOPIC_SPREAD = 50
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
        _insert_projects(conn)
        for start in range(0, count, _CHUNK):
            tasks: list[tuple[object, ...]] = []
            labels: list[tuple[str, str]] = []
            for i in range(start, min(start + _CHUNK, count)):
                task = _task(rng, i, count)
                tasks.append(sql.task_row(task))
                labels.extend((label, task.id) for label in task.labels)
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO tasks VALUES (" + ", ".join("?" * sql.TASK_COLUMNS) + ")", tasks)
            conn.executemany("INSERT OR IGNORE INTO task_labels VALUES (?, ?)", labels)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _insert_projects(conn: sqlite3.Connection) -> None:
    """PROJECTS, each with OWNER as its owner (the store's own rows: body and members)."""
    for project_id in PROJECTS:
        project = pb.Project(id=project_id, title=project_id, created_by=OWNER, version=1)
        project.members.add(user=OWNER, role=pb.PROJECT_ROLE_OWNER)
        project.created_at.FromMicroseconds(_START_US)
        project.updated_at.FromMicroseconds(_START_US)
        conn.execute(
            "INSERT INTO projects VALUES (?, ?, ?)", (project_id, _START_US, project.SerializeToString())
        )
        conn.execute(
            "INSERT INTO project_members VALUES (?, ?, ?)", (OWNER, project_id, pb.PROJECT_ROLE_OWNER)
        )


async def _migrate(path: Path) -> None:
    store = SQLiteStore(str(path), durable=False)
    await store.open()
    await store.close()


def _task(rng: random.Random, i: int, count: int) -> pb.Task:
    created_us = _START_US + i * 1000
    topic = rng.randrange(max(1, count // TOPIC_SPREAD))
    task = pb.Task(
        id=new_task_id(),
        title=f"{COMMON_WORDS[i % len(COMMON_WORDS)]} topic{topic} generated task {i}",
        # Half the tasks are personal, half in one of the owner's projects: a user's list reads both.
        project_id="" if i % 2 == 0 else PROJECTS[(i // 2) % len(PROJECTS)],
        description="a task the benchmark wrote straight into the database",
        status=rng.choice(_STATUSES),
        priority=rng.choice(_PRIORITIES),
        labels=rng.sample(LABELS, 2),
        created_by=OWNER,
        assigned_to="someone-else" if rng.random() < 0.1 else "",
        version=1,
    )
    task.created_at.FromMicroseconds(created_us)
    task.updated_at.FromMicroseconds(created_us)
    if rng.random() < 0.6:  # most tasks have a due date, within a few months of their creation
        task.due_date.FromMicroseconds(created_us + rng.randrange(-30, 90) * 86_400_000_000)
    return task


async def copy_to_postgres(database: Path, dsn: str) -> None:
    """Copy a filled SQLite database's tasks into a migrated PostgreSQL database, then ANALYZE it
    (the list matrix on PostgreSQL)."""
    import asyncpg

    from taskservice.store.postgres import PostgresStore

    await PostgresStore(dsn).migrate()
    source = sqlite3.connect(database)
    conn = await asyncpg.connect(dsn)
    try:
        columns = [row[1] for row in source.execute("PRAGMA table_info(tasks)")]
        rows = source.execute("SELECT * FROM tasks")
        while chunk := rows.fetchmany(_CHUNK):
            await conn.copy_records_to_table("tasks", records=chunk, columns=columns)
        for table in ("task_labels", "projects", "project_members"):
            names = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
            rows = source.execute(f"SELECT * FROM {table}")
            while chunk := rows.fetchmany(_CHUNK):
                await conn.copy_records_to_table(table, records=chunk, columns=names)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
        source.close()
