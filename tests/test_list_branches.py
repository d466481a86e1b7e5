"""A user's list is read as one ordered read per part of their sight (assigned, personal, each
project), merged (store/sql.py: page_sql). Paged in every order, on both stores, it returns exactly
the tasks the visibility rule and the filter accept, in order, each once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator

import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.filters import parse
from taskservice.domain.paging import PageQuery, SortKey, TaskFilter, sort_value
from taskservice.domain.values import new_task_id
from taskservice.domain.visibility import Sight
from taskservice.store.base import NewTask, TaskStore
from taskservice.store.postgres import PostgresStore
from taskservice.store.sqlite import SQLiteStore
from tests.postgres import Database, require_postgres

ME = "me"


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Callable[[], TaskStore]]:
    if request.param == "sqlite":
        yield lambda: SQLiteStore(None, durable=False)
        return
    require_postgres()
    database = Database().create()
    try:
        yield lambda: PostgresStore(database.url)
    finally:
        database.drop()


def _tasks(rng: random.Random, count: int) -> list[pb.Task]:
    tasks = []
    for i in range(count):
        task = pb.Task(
            id=new_task_id(),
            title=f"t{i}",
            created_by=rng.choice([ME, "other"]),
            assigned_to=rng.choice([ME, "", "", "x"]),
            project_id=rng.choice(["", "", "p1", "p2", "p3"]),
            status=rng.choice([pb.TASK_STATUS_TODO, pb.TASK_STATUS_DONE]),
            priority=rng.choice([pb.PRIORITY_LOW, pb.PRIORITY_HIGH]),
            version=1,
        )
        task.created_at.FromMicroseconds(1_000_000 + rng.randrange(50))  # ties, so id breaks them
        task.updated_at.FromMicroseconds(2_000_000 + rng.randrange(50))
        if rng.random() < 0.5:
            task.due_date.FromMicroseconds(3_000_000 + rng.randrange(20))
        tasks.append(task)
    return tasks


ORDERS = [
    (SortKey("created_at"),),
    (SortKey("due_date", True),),
    (SortKey("priority"), SortKey("updated_at", True)),
    (SortKey("due_date"), SortKey("priority", True), SortKey("created_at")),
]


def test_pages_through_every_part_in_order(make_store: Callable[[], TaskStore]) -> None:
    rng = random.Random(3)
    tasks = _tasks(rng, 120)
    sight = Sight(ME, frozenset({"p1", "p3"}))

    async def run() -> None:
        store = make_store()
        await store.open()
        try:
            await store.create_many([NewTask(task) for task in tasks])
            for expression in (None, parse("status = TODO"), parse('project_id = "p1"')):
                base = TaskFilter(visible_to=sight, expression=expression)
                for order in ORDERS:
                    expected = sorted((t for t in tasks if base.matches(t)), key=lambda t: _key(t, order))
                    seen: list[pb.Task] = []
                    query = PageQuery(base, order, 8)
                    while True:
                        page = await store.list_page(query)
                        seen += page[:7]
                        if len(page) < 8:
                            break
                        last = page[6]
                        after = (tuple(sort_value(last, k.field) for k in order), last.id)
                        query = PageQuery(base, order, 8, after)
                    assert [t.id for t in seen] == [t.id for t in expected], (expression, order)
        finally:
            await store.close()

    asyncio.run(run())


def _key(task: pb.Task, order: tuple[SortKey, ...]) -> tuple[int, ...]:
    """The order as a sort key; the id (same-length ASCII) breaks ties in the last key's direction."""
    parts = [-sort_value(task, k.field) if k.descending else sort_value(task, k.field) for k in order]
    sign = -1 if order[-1].descending else 1
    return (*parts, *(sign * b for b in task.id.encode()))
