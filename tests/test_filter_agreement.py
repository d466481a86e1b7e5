"""One filter, one meaning: for random tasks and random filters, the SQL each store runs selects
exactly the tasks the in-memory test (used by watches and count upkeep) accepts."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.filters import Filter, parse
from taskservice.domain.values import new_task_id
from taskservice.store import filter_sql, sql
from taskservice.store.postgres import PostgresStore
from taskservice.store.sqlite import SQLiteStore
from taskservice.store.sqlite import statements as stmt
from tests.postgres import Database, require_postgres

NOW = 1_750_000_000_000_000
TIMES = [NOW - 86_400_000_000 * 3, NOW - 1, NOW, NOW + 1, NOW + 7_200_000_000]
TEXTS = ["", "a", "ab", "b a", "bug", "Bug", "ü", 'x"y', "50%_"]
USERS = ["", "ana", "bo"]
LABELS = ["bug", "ui", "Bug"]
KEYS = ["team", "k"]
STATUSES = [pb.TASK_STATUS_TODO, pb.TASK_STATUS_IN_PROGRESS, pb.TASK_STATUS_DONE, pb.TASK_STATUS_CANCELLED]
PRIORITIES = [pb.PRIORITY_LOW, pb.PRIORITY_MEDIUM, pb.PRIORITY_HIGH, pb.PRIORITY_CRITICAL]


@st.composite
def tasks(draw: st.DrawFn) -> pb.Task:
    task = pb.Task(
        id=new_task_id(),
        title=draw(st.sampled_from(TEXTS)),
        description=draw(st.sampled_from(TEXTS)),
        status=draw(st.sampled_from(STATUSES)),
        priority=draw(st.sampled_from(PRIORITIES)),
        labels=draw(st.lists(st.sampled_from(LABELS), unique=True, max_size=2)),
        assigned_to=draw(st.sampled_from(USERS)),
        created_by=draw(st.sampled_from(USERS[1:])),
        project_id=draw(st.sampled_from(["", "p1"])),
        parent_id=draw(st.sampled_from(["", "t1"])),
        version=draw(st.integers(1, 3)),
    )
    task.created_at.FromMicroseconds(draw(st.sampled_from(TIMES)))
    task.updated_at.FromMicroseconds(draw(st.sampled_from(TIMES)))
    if draw(st.booleans()):
        task.due_date.FromMicroseconds(draw(st.sampled_from(TIMES)))
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=2)):
        task.metadata[key] = draw(st.sampled_from(TEXTS))
    return task


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc3339(us: int) -> str:
    return _quoted((datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).isoformat())


ORDERING = ["=", "!=", "<", "<=", ">", ">="]
restrictions = st.one_of(
    st.builds(
        lambda f, op, v: f"{f} {op} {_quoted(v)}" if op != ":*" else f"{f}:*",
        st.sampled_from(["title", "description", "assigned_to", "created_by", "project_id", "parent_id"]),
        st.sampled_from(["=", "!=", ":", ":*"]),
        st.sampled_from(TEXTS + USERS + ["p1", "t1"]),
    ),
    st.builds(
        lambda f, op, v: f"{f} {op} {v}",
        st.sampled_from(["status", "priority"]),
        st.sampled_from([*ORDERING, ":"]),
        st.sampled_from(["TODO", "TASK_STATUS_DONE", "in_progress", "HIGH", "PRIORITY_LOW", "2", "CRITICAL"]),
    ).filter(
        lambda text: (
            not (text.startswith("status") and ("PRIORITY" in text or text[-4:] in ("HIGH", "ICAL")))
            and not (text.startswith("priority") and ("STATUS" in text or text.endswith(("TODO", "gress"))))
        )
    ),
    st.builds(
        lambda op, v: f"labels{op}{_quoted(v)}",
        st.sampled_from([":", " = ", " != "]),
        st.sampled_from([*LABELS, "x"]),
    ),
    st.just("labels:*"),
    st.builds(
        lambda f, op, v: f"{f} {op} {v}",
        st.sampled_from(["due_date", "created_at", "updated_at"]),
        st.sampled_from(ORDERING),
        st.one_of(
            st.sampled_from(TIMES).map(_rfc3339), st.sampled_from(["now", "now-3d", "now+2h", "now-1d"])
        ),
    ),
    st.sampled_from(["due_date:*", "created_at:*"]),
    st.builds(lambda op, v: f"version {op} {v}", st.sampled_from([*ORDERING, ":"]), st.integers(0, 4)),
    st.builds(
        lambda k, op, v: f"metadata.{k}:*" if op == ":*" else f"metadata.{k} {op} {_quoted(v)}",
        st.sampled_from([*KEYS, "none"]),
        st.sampled_from(["=", "!=", ":", ":*"]),
        st.sampled_from(TEXTS),
    ),
    st.sampled_from(["metadata:team", "metadata:*", "metadata:none"]),
)
filters = st.recursive(
    restrictions,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a} AND {b})", inner, inner),
        st.builds(lambda a, b: f"({a} OR {b})", inner, inner),
        st.builds(lambda a, b: f"{a} {b}", inner, inner),
        st.builds(lambda a: f"NOT ({a})", inner),
        st.builds(lambda a: f"-({a})", inner),
    ),
    max_leaves=6,
)


def _in_memory(parsed: Filter, chosen: list[pb.Task]) -> set[str]:
    return {task.id for task in chosen if parsed.matches(task)}


class SQLiteSide:
    def __init__(self, path: Path) -> None:
        store = SQLiteStore(str(path), durable=False)
        asyncio.run(_open_close(store))
        self.conn = sqlite3.connect(path, isolation_level=None)

    def load(self, chosen: list[pb.Task]) -> None:
        self.conn.execute("BEGIN")
        self.conn.execute("DELETE FROM tasks")
        self.conn.execute("DELETE FROM task_labels")
        stmt.insert_created(self.conn, chosen)
        self.conn.execute("COMMIT")

    def select(self, parsed: Filter) -> set[str]:
        params = sql.Params(stmt.qmark)
        where = filter_sql.condition(parsed.expr, params, "sqlite")
        return {row[0] for row in self.conn.execute(f"SELECT id FROM tasks WHERE {where}", params.values)}


class PostgresSide:
    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(PostgresStore(url).migrate())
        self.conn: Any = self.loop.run_until_complete(asyncpg.connect(url))

    def load(self, chosen: list[pb.Task]) -> None:
        async def run() -> None:
            async with self.conn.transaction():
                await self.conn.execute("DELETE FROM tasks; DELETE FROM task_labels")
                columns = ", ".join(f"${n}" for n in range(1, sql.TASK_COLUMNS + 1))
                await self.conn.executemany(
                    f"INSERT INTO tasks VALUES ({columns})", [sql.task_row(t) for t in chosen]
                )
                labels = [(label, t.id) for t in chosen for label in t.labels]
                await self.conn.executemany("INSERT INTO task_labels VALUES ($1, $2)", labels)

        self.loop.run_until_complete(run())

    def select(self, parsed: Filter) -> set[str]:
        params = sql.Params(lambda n: f"${n}")
        where = filter_sql.condition(parsed.expr, params, "postgres")
        rows = self.loop.run_until_complete(
            self.conn.fetch(f"SELECT id FROM tasks WHERE {where}", *params.values)
        )
        return {row[0] for row in rows}

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


async def _open_close(store: SQLiteStore) -> None:
    await store.open()
    await store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def side(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if request.param == "sqlite":
        yield SQLiteSide(tmp_path_factory.mktemp("agree") / "tasks.db")
        return
    require_postgres()
    database = Database().create()
    pg = PostgresSide(database.url)
    try:
        yield pg
    finally:
        pg.close()
        database.drop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.lists(tasks(), min_size=1, max_size=8), text=filters)
def test_sql_and_memory_agree(side: Any, chosen: list[pb.Task], text: str) -> None:
    parsed = parse(text, now=NOW)
    assert parsed is not None
    side.load(chosen)
    assert side.select(parsed) == _in_memory(parsed, chosen), text


def test_the_generator_reaches_both_outcomes(side: Any) -> None:
    """A guard against a vacuous property: the fixed cases below select some tasks and not others."""
    a = pb.Task(
        id=new_task_id(),
        title="ab",
        created_by="ana",
        status=pb.TASK_STATUS_TODO,
        priority=pb.PRIORITY_HIGH,
        labels=["bug"],
        version=1,
    )
    b = pb.Task(
        id=new_task_id(),
        title="b a",
        created_by="bo",
        status=pb.TASK_STATUS_DONE,
        priority=pb.PRIORITY_LOW,
        version=2,
    )
    for task in (a, b):
        task.created_at.FromMicroseconds(NOW)
        task.updated_at.FromMicroseconds(NOW)
    a.metadata["team"] = "core"
    side.load([a, b])
    for text, expected in [
        ('labels:"bug"', {a.id}),
        ("NOT labels:*", {b.id}),
        ('title:"a"', {a.id, b.id}),
        ("metadata.team != core", {b.id}),
        ("priority >= HIGH OR status = DONE", {a.id, b.id}),
        ("due_date:* OR version = 2", {b.id}),
    ]:
        parsed = parse(text, now=NOW)
        assert parsed is not None
        assert side.select(parsed) == expected == _in_memory(parsed, [a, b]), text
