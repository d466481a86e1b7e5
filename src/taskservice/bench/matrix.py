"""The list matrix: every single filter by every order, common combinations, filter-language and
full-text queries, each timed through the service layer on a small and a large store.

It runs in-process (no network, no h2load): what it compares is how a query's cost grows with
the store, which is the store's plan, not the transport. Each query is asked once to warm the
page cache and the count cache (as a user paging through a list does), then repeatedly for a
fixed time; the rate at the large size over the rate at the small one is the figure that must stay
near 1 (target: at least 0.5; full text at least 0.3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.bench import fill
from taskservice.domain.events import EventWindow
from taskservice.domain.paging import PageTokens
from taskservice.domain.service import TaskService
from taskservice.store.base import TaskStore

ORDERS = ("created_at", "updated_at", "priority", "due_date")
SINGLE_FILTERS: dict[str, dict[str, object]] = {
    "status": {"statuses": [pb.TASK_STATUS_TODO]},
    "priority": {"priorities": [pb.PRIORITY_HIGH]},
    "label": {"labels": [fill.LABELS[3]]},
    "assignee": {"assigned_to": "someone-else"},
    "creator": {"created_by": fill.OWNER},
    "project": {"project_id": fill.PROJECTS[3]},
}
COMBINED: dict[str, dict[str, object]] = {
    "open, soonest first": {
        "statuses": [pb.TASK_STATUS_TODO, pb.TASK_STATUS_IN_PROGRESS],
        "order_by": "due_date",
    },
    "status + priority, by due date": {
        "statuses": [pb.TASK_STATUS_TODO],
        "priorities": [pb.PRIORITY_HIGH],
        "order_by": "due_date",
    },
    "status + label, newest first": {
        "statuses": [pb.TASK_STATUS_TODO],
        "labels": [fill.LABELS[3]],
        "order_by": "created_at",
        "descending": True,
    },
    "assignee + status, by updated": {
        "assigned_to": "someone-else",
        "statuses": [pb.TASK_STATUS_TODO],
        "order_by": "updated_at",
    },
    "project + status, by priority": {
        "filter": f'project_id = "{fill.PROJECTS[3]}" AND status = TODO',
        "order_by": "priority desc, due_date",
    },
}
FILTER_LANGUAGE: dict[str, dict[str, object]] = {
    "filter: status = TODO AND priority >= HIGH, by due date": {
        "filter": "status = TODO AND priority >= HIGH",
        "order_by": "due_date",
    },
    "filter: (DONE OR CANCELLED) AND labels, by updated desc": {
        "filter": f'(status = DONE OR status = CANCELLED) AND labels:"{fill.LABELS[5]}"',
        "order_by": "updated_at desc",
    },
    "filter: due before a date, by due date": {
        "filter": 'due_date < "2023-11-20T00:00:00Z"',
        "order_by": "due_date",
    },
}
FULL_TEXT: dict[str, dict[str, object]] = {
    "query: a topic word (about 50 matches), by relevance": {"query": "topic7"},
    "query: a common word (1 task in 20), by relevance": {"query": "invoice"},
    "query: a common word (1 task in 20), by created_at": {"query": "invoice", "order_by": "created_at"},
    "query: a prefix (release*) and a status, by due date": {
        "query": "releas*",
        "statuses": [pb.TASK_STATUS_TODO],
        "order_by": "due_date",
    },
}


@dataclass(frozen=True, slots=True)
class Cell:
    name: str
    kind: str  # single, combined, filter, full-text
    per_second: float


def queries() -> Iterator[tuple[str, str, pb.ListTasksRequest]]:
    """(name, kind, request) for every cell of the matrix, each a first page of 50."""
    for filter_name, fields in SINGLE_FILTERS.items():
        for order in ORDERS:
            request = pb.ListTasksRequest(page_size=50, order_by=order, **fields)  # type: ignore[arg-type]
            yield f"{filter_name} by {order}", "single", request
    for kind, table in (("combined", COMBINED), ("filter", FILTER_LANGUAGE), ("full-text", FULL_TEXT)):
        for name, fields in table.items():
            yield name, kind, pb.ListTasksRequest(page_size=50, **fields)  # type: ignore[arg-type]


async def _rate(service: TaskService, caller: Caller, request: pb.ListTasksRequest, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done < 3:
        await service.list(caller, request)
        done += 1
    return done / elapsed


async def measure(
    stores: list[TaskStore], seconds: float, caller: Caller, rounds: int = 3
) -> list[list[Cell]]:
    """Each query's first-page rate on each open store, as `caller` (not an admin: the visibility
    condition is part of every query a user asks). The stores take turns, `rounds` times, and each
    keeps its best round: on a shared machine, what others run then falls on both sides alike."""
    services = [TaskService(store, EventWindow(store), PageTokens(b"m" * 32)) for store in stores]
    cells: list[list[Cell]] = [[] for _ in stores]
    for name, kind, request in queries():
        best = [0.0 for _ in stores]
        for service in services:
            await service.list(caller, request)  # warm: the count cache, the page cache
        for _ in range(rounds):
            for i, service in enumerate(services):
                best[i] = max(best[i], await _rate(service, caller, request, seconds / rounds))
        for i, rate in enumerate(best):
            cells[i].append(Cell(name, kind, rate))
    return cells


def sqlite_matrix(databases: list[Path], seconds: float) -> list[list[Cell]]:
    from taskservice.store.sqlite import SQLiteStore

    async def run() -> list[list[Cell]]:
        stores = [SQLiteStore(str(database), durable=False) for database in databases]
        for store in stores:
            await store.open()
        try:
            return await measure(list(stores), seconds, Caller(fill.OWNER))
        finally:
            for store in stores:
                await store.close()

    return asyncio.run(run())


def postgres_matrix(dsns: list[str], seconds: float) -> list[list[Cell]]:
    from taskservice.store.postgres import PostgresStore

    async def run() -> list[list[Cell]]:
        stores = [PostgresStore(dsn) for dsn in dsns]
        for store in stores:
            await store.open()
        try:
            return await measure(list(stores), seconds, Caller(fill.OWNER))
        finally:
            for store in stores:
                await store.close()

    return asyncio.run(run())


def table(small: list[Cell], large: list[Cell], small_n: int, large_n: int) -> str:
    """The matrix as a Markdown table: each query's rate at both sizes and their ratio."""
    lines = [
        f"| query | kind | {small_n:,} tasks (/s) | {large_n:,} tasks (/s) | ratio | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for a, b in zip(small, large, strict=True):
        target = 0.3 if a.kind == "full-text" else 0.5
        ratio = b.per_second / a.per_second
        mark = "ok" if ratio >= target else "**below**"
        lines.append(
            f"| {a.name} | {a.kind} | {a.per_second:,.0f} | {b.per_second:,.0f} | {ratio:.2f} | ≥ {target} {mark} |"
        )
    return "\n".join(lines)
