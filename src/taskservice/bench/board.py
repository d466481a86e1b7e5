"""`taskservice bench-board`: the task board in Chromium over N tasks, as its owner sees it.

For each size it serves a database filled by `fill` (every task visible to its owner) and opens
the board in Debian's Chromium through Playwright, then reports what a person waits for and what
the page holds: the time from navigation until the first column shows its count and first cards,
the card nodes in the DOM after scrolling that column through several pages, and the delay from a
task created by another client (a gRPC call) until its card shows. The page takes its own
timestamps (performance.now from navigation start, Date.now for the create), so the figures are
the browser's, not the driver's round trips.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.bench import fill
from taskservice.bench.scenarios import TaskServer, jwt_available

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
FIRST_COLUMN = "1"  # data-status of "To do"
_SCROLL_PAGES = 6  # how far down the first column the node count is taken
_RUNS = 5  # navigations per size, after one that warms the browser up; the median counts

# Runs in the page before its scripts: notes when the first column has its count and a card.
_WATCH_FIRST_COLUMN = """
(() => {
  const check = () => {
    const column = document.querySelector('section[data-status="FIRST_COLUMN"]');
    if (column && column.dataset.total !== undefined && column.querySelector('[data-testid="task-card"]')) {
      window.__firstColumnMs = performance.now();
      return;
    }
    requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})();
""".replace("FIRST_COLUMN", FIRST_COLUMN)

_WAIT_FOR_TITLE = """
(title) => { window.__shown = new Promise((resolve) => {
  const check = () => {
    const found = [...document.querySelectorAll('[data-testid="task-card"] .card-title')]
      .some((el) => el.textContent === title);
    if (found) resolve(Date.now()); else requestAnimationFrame(check);
  };
  check();
}); }
"""


@dataclass(frozen=True)
class BoardFigures:
    tasks: int
    first_column_s: float  # median of the runs
    first_column_runs: list[float]
    first_column_cold_s: float  # the first navigation: a fresh server (nothing cached) and browser
    first_column_total: int  # the count the first column showed
    card_nodes: int  # the most card nodes in the DOM, after scrolling the first column
    loaded_cards: int  # cards loaded into the first column by then
    live_delay_s: float  # a create by another client until its card showed


def chromium_path() -> str | None:
    return (
        os.environ.get("TASKSERVICE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


def measure(
    sizes: list[int], cache_dir: Path, say: Callable[[str], None], workdir: Path | None = None
) -> list[BoardFigures]:
    """Serve a filled database of each size and measure the board over it."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium found (apt-get install chromium, or set TASKSERVICE_CHROMIUM)")
    root = workdir or Path(tempfile.mkdtemp(prefix="taskservice-board-bench-"))
    results: list[BoardFigures] = []
    try:
        databases: dict[int, Path] = {}
        for size in sizes:  # before Playwright starts: its sync API holds an event loop open
            say(f"board over {size:,} tasks: filling (cached after the first run)")
            databases[size] = fill.copy_database(
                fill.filled_database(cache_dir, size), root / f"board-{size}" / "tasks.db"
            )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
            try:
                for size, database in databases.items():
                    figures = _measure_one(browser, database, size)
                    say(
                        f"  first column {figures.first_column_s * 1000:.0f} ms "
                        f"(runs {', '.join(f'{r * 1000:.0f}' for r in figures.first_column_runs)}; "
                        f"cold {figures.first_column_cold_s * 1000:.0f}), "
                        f"count {figures.first_column_total:,}, card nodes {figures.card_nodes} "
                        f"with {figures.loaded_cards} loaded, live {figures.live_delay_s * 1000:.0f} ms"
                    )
                    results.append(figures)
            finally:
                browser.close()
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return results


def _measure_one(browser: Any, database: Path, size: int) -> BoardFigures:
    auth = "jwt" if jwt_available() else "none"
    server = TaskServer(database.parent, database, auth, "server")
    try:
        token = server.token(fill.OWNER) if auth == "jwt" else None
        url = f"http://127.0.0.1:{server.http_port}/" + (f"#token={token}" if token else "")
        runs: list[float] = []
        cold = 0.0
        for run in range(_RUNS + 1):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            try:
                page = context.new_page()
                page.add_init_script(_WATCH_FIRST_COLUMN)
                page.goto(url)
                page.wait_for_function("window.__firstColumnMs !== undefined", timeout=60_000)
                seconds = page.evaluate("window.__firstColumnMs") / 1000
                if run:  # the first navigation pays cold starts whatever the size: reported alone
                    runs.append(seconds)
                else:
                    cold = seconds
            finally:
                context.close()
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector('[data-testid="connection-state"][data-state="live"]', timeout=60_000)
            total = int(page.get_attribute(f'section[data-status="{FIRST_COLUMN}"]', "data-total") or 0)
            nodes, loaded = _scroll_first_column(page)
            delay = _live_delay(page, server, token)
        finally:
            context.close()
    finally:
        server.stop()
    return BoardFigures(
        tasks=size,
        first_column_s=statistics.median(runs),
        first_column_runs=runs,
        first_column_cold_s=cold,
        first_column_total=total,
        card_nodes=nodes,
        loaded_cards=loaded,
        live_delay_s=delay,
    )


def _scroll_first_column(page: Any) -> tuple[int, int]:
    """Scroll the first column down through several pages; the most card nodes seen, and how many
    cards the column had loaded by then."""
    scroller = page.locator(f'section[data-status="{FIRST_COLUMN}"] [data-testid="column-cards"]')
    most = 0
    for _ in range(_SCROLL_PAGES * 4):
        scroller.evaluate("(el) => { el.scrollTop = el.scrollHeight; }")
        page.wait_for_timeout(150)
        most = max(most, page.locator('[data-testid="task-card"]').count())
    loaded = page.get_attribute(f'section[data-status="{FIRST_COLUMN}"]', "data-loaded")
    return most, int(loaded or 0)


def _live_delay(page: Any, server: TaskServer, token: str | None) -> float:
    title = f"created elsewhere {uuid.uuid4().hex[:8]}"
    page.evaluate("() => { window.scrollTo(0, 0); }")
    page.locator(f'section[data-status="{FIRST_COLUMN}"] [data-testid="column-cards"]').evaluate(
        "(el) => { el.scrollTop = 0; }"
    )
    page.evaluate(_WAIT_FOR_TITLE, title)
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = rpc.TaskServiceStub(channel)
        sent_ms = time.time() * 1000
        stub.CreateTask(pb.CreateTaskRequest(title=title), metadata=metadata, timeout=10)
    shown_ms = float(page.evaluate("window.__shown"))
    return max(0.0, shown_ms - sent_ms) / 1000


def write(results: list[BoardFigures], out: Path) -> None:
    out.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
