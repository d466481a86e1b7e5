"""The soak's end-of-run checks and its output, judged against the database itself.

What the load records (`Expect` per acknowledged task, `WatcherLog` per watcher) is compared with the
stored tasks and the event log, read straight from SQLite or PostgreSQL; `table` and `chart` present
the result. Everything here is plain functions over that data, so `bench/soak.py` keeps the load.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from taskservice.api import task_service_pb2 as pb
from taskservice.store.base import PROJECT_EVENT

MAX_GROWTH = 0.10
# Growth is judged only on runs this long: the bounded caches (event window, task cache, SQLite's
# page cache) are still filling during the first minutes, so a shorter run measures warm-up.
JUDGE_GROWTH_AFTER_S = 600.0

_TASKS_SQL = "SELECT body FROM tasks WHERE deleted_us = 0"
_EVENTS_SQL = "SELECT sequence, event_type, task FROM events ORDER BY sequence"


@dataclass
class Expect:
    """An acknowledged task as the soak last saw it acknowledged."""

    version: int
    title: str
    creator: str
    project_id: str = ""  # "" for a personal task
    deleted: bool = False
    uncertain: bool = False  # a write on it ended without a definite answer


@dataclass
class WatcherLog:
    """One watcher's history: a digest of every event it received, from `start` to `last`. It
    follows `project_id` when set (as a member of it), else the label named after its user."""

    user: str
    start: int
    project_id: str = ""
    last: int = 0
    count: int = 0
    resumes: int = 0
    disorder: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """A task event of the log, with what the watchers' filters look at."""

    sequence: int
    event_type: int
    task_id: str
    version: int
    labels: tuple[str, ...]
    project_id: str


def event_key(sequence: int, event_type: int, task_id: str, version: int) -> bytes:
    return f"{sequence}:{event_type}:{task_id}:{version};".encode()


def read_store(
    sqlite_path: Path | None, database_url: str
) -> tuple[dict[str, tuple[int, str]], list[LoggedEvent]]:
    """Live tasks (id → version, title; a task in the trash is not live) and the task events of the
    log in sequence order (project changes, which watchers never receive, left out)."""
    if sqlite_path is not None:
        db = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
        try:
            task_rows = db.execute(_TASKS_SQL).fetchall()
            event_rows = db.execute(_EVENTS_SQL).fetchall()
        finally:
            db.close()
    else:
        task_rows, event_rows = asyncio.run(_pg_rows(database_url))
    tasks = {}
    for (body,) in task_rows:
        task = pb.Task.FromString(bytes(body))
        tasks[task.id] = (task.version, task.title)
    events = []
    for sequence, event_type, body in event_rows:
        if event_type == PROJECT_EVENT:
            continue
        task = pb.Task.FromString(bytes(body))
        events.append(
            LoggedEvent(
                int(sequence), int(event_type), task.id, task.version, tuple(task.labels), task.project_id
            )
        )
    return tasks, events


async def _pg_rows(database_url: str) -> tuple[list[Any], list[Any]]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        tasks = await conn.fetch(_TASKS_SQL)
        events = await conn.fetch(_EVENTS_SQL)
        return [tuple(r) for r in tasks], [tuple(r) for r in events]
    finally:
        await conn.close()


def lost_writes(ledger: dict[str, Expect], tasks: dict[str, tuple[int, str]]) -> tuple[int, int]:
    """(lost, uncertain): an acknowledged task missing or not as acknowledged, or deleted yet there,
    is lost; one whose last write ended without an answer is uncertain and not judged."""
    lost = uncertain = 0
    for task_id, expect in ledger.items():
        if expect.uncertain:
            uncertain += 1
        elif expect.deleted:
            lost += task_id in tasks
        elif tasks.get(task_id) != (expect.version, expect.title):
            lost += 1
    return lost, uncertain


def history_mismatches(watchers: list[WatcherLog], events: list[LoggedEvent]) -> list[WatcherLog]:
    """The watchers whose history differs from the log over their span: the events of their label,
    or of their project (by the project_id of the task each event carries)."""
    followed: dict[str, list[LoggedEvent]] = {}
    for event in events:
        for label in event.labels:
            followed.setdefault("label:" + label, []).append(event)
        if event.project_id:
            followed.setdefault("project:" + event.project_id, []).append(event)
    wrong = []
    for log in watchers:
        key = "project:" + log.project_id if log.project_id else "label:" + log.user
        expected = hashlib.sha256()
        count = 0
        for event in followed.get(key, []):
            if log.start < event.sequence <= log.last:
                expected.update(event_key(event.sequence, event.event_type, event.task_id, event.version))
                count += 1
        if log.disorder or count != log.count or expected.digest() != log.digest.digest():
            wrong.append(log)
    return wrong


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2]) if ordered else 0.0


def growth(samples: list[tuple[float, int, int]], duration_s: float) -> dict[str, float]:
    """Relative growth from the middle of the run (45-55%) to its end (last 10%)."""
    middle = [s for s in samples if 0.45 * duration_s <= s[0] <= 0.55 * duration_s]
    end = [s for s in samples if s[0] >= 0.9 * duration_s]
    result = {}
    for name, index in (("rss", 1), ("fds", 2)):
        before, after = _median([s[index] for s in middle]), _median([s[index] for s in end])
        result[name] = round((after - before) / before, 4) if before else 0.0
    return result


def p99_per_minute(calls: list[tuple[float, str, float, str]]) -> list[dict[str, float]]:
    minutes: dict[int, list[float]] = {}
    for at, op, latency, status in calls:
        if op != "watch" and status == "OK":
            minutes.setdefault(int(at // 60), []).append(latency)
    rows = []
    for minute, latencies in sorted(minutes.items()):
        latencies.sort()
        rows.append(
            {
                "minute": minute,
                "calls": len(latencies),
                "p50_ms": round(latencies[len(latencies) // 2], 2),
                "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
            }
        )
    return rows


def table(result: dict[str, Any]) -> str:
    projects = result["projects"]
    lines = [
        f"calls {result['calls']:,}  acknowledged tasks {result['acknowledged_tasks']:,}  "
        f"lost {result['lost_writes']}  uncertain {result['uncertain_writes']}",
        f"projects {projects['projects']}  project tasks {projects['tasks']:,}  project calls "
        f"{projects['calls']:,}  teammate writes {projects['teammate_writes']:,}",
        f"watchers {result['watchers']}  events {result['watcher_events']:,}  resumes "
        f"{result['watcher_resumes']:,}  mismatched {result['watchers_mismatched']}",
        f"project watchers {projects['watchers']}  events {projects['watcher_events']:,}  "
        f"mismatched {projects['watchers_mismatched']}",
        f"statuses {result['statuses']}",
        f"growth in the second half: RSS {result['growth_second_half']['rss']:+.1%}, "
        f"fds {result['growth_second_half']['fds']:+.1%}"
        + (
            "" if result["growth_judged"] else f" (not judged: runs under {JUDGE_GROWTH_AFTER_S:g} s warm up)"
        ),
        f"faults {result['faults']}",
        "",
        "minute | calls  | p50 ms | p99 ms",
        "-------+--------+--------+-------",
    ]
    for row in result["p99_ms_per_minute"]:
        lines.append(f"{row['minute']:>6} | {row['calls']:>6} | {row['p50_ms']:>6} | {row['p99_ms']:>6}")
    lines.append("")
    for check, ok in result["checks"].items():
        lines.append(f"{'PASS' if ok else 'FAIL'}  {check}")
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    """RSS (MiB) and p99 per minute over time, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, rss_axis = plt.subplots(figsize=(9, 4))
    samples = result["samples"]
    rss_axis.plot([s[0] / 60 for s in samples], [s[1] / 2**20 for s in samples], color="tab:blue")
    rss_axis.set_xlabel("minutes")
    rss_axis.set_ylabel("server RSS (MiB)", color="tab:blue")
    p99_axis = rss_axis.twinx()
    rows = result["p99_ms_per_minute"]
    p99_axis.plot([r["minute"] + 0.5 for r in rows], [r["p99_ms"] for r in rows], "o-", color="tab:red")
    p99_axis.set_ylabel("p99 per minute (ms)", color="tab:red")
    for at, what in result["faults"]:
        rss_axis.axvline(at / 60, color="grey", linestyle=":")
        rss_axis.annotate(what, (at / 60, rss_axis.get_ylim()[1]), fontsize=7, rotation=90, va="top")
    fig.suptitle(f"taskservice soak: {result['config']['store']}, {result['config']['duration_s']:g} s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
