"""The board's search box and a task's history, in a real browser: words find tasks by their
description, a filter expression narrows every column, a filter the server cannot read is reported
with its position while the board keeps what it showed, tasks another client creates or changes
follow the active search live, and the editor lists a task's changes."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from taskservice.api import task_service_pb2 as pb
from tests.e2e import test_board_columns
from tests.e2e.conftest import Board, need
from tests.e2e.test_board_columns import (  # noqa: F401  (open_page: a fixture)
    AXE,
    _axe,
    card,
    cards,
    column,
    metadata,
    only_label,
    open_page,
    user,
)

pytestmark = pytest.mark.browser

TODO, IN_PROGRESS, DONE = pb.TASK_STATUS_TODO, pb.TASK_STATUS_IN_PROGRESS, pb.TASK_STATUS_DONE
expect: Any = None


@pytest.fixture(autouse=True)
def _expect(chromium: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=5_000)
    expect = test_board_columns.expect = playwright_expect  # the helpers use that module's


def create(board: Board, name: str, **fields: Any) -> pb.Task:
    task: pb.Task = board.server.stub().CreateTask(
        pb.CreateTaskRequest(**fields), metadata=metadata(board, name)
    )
    return task


def search(page: Any, text: str) -> None:
    """Type into the search box and wait until the columns show its answer."""
    page.get_by_test_id("filter-search").fill(text)
    page.wait_for_function(
        """(text) => {
            const shown = new URLSearchParams(document.getElementById("columns").dataset.filters || "");
            return (shown.get("filter") || shown.get("query") || "") === text.trim();
        }""",
        arg=text,
        timeout=5_000,
    )


def count(page: Any, status: int) -> Any:
    return column(page, status).get_by_test_id("column-count")


def test_words_find_a_task_by_a_word_in_its_description(open_page: Any, board: Board) -> None:  # noqa: F811
    name, label = user(), "words-" + uuid.uuid4().hex[:8]
    word = "zebra" + uuid.uuid4().hex[:6]
    found = create(board, name, title="Fix the login", description=f"the {word} form breaks", labels=[label])
    other = create(board, name, title="Water the plants", description="nothing to see", labels=[label])
    page = open_page(name)
    only_label(page, label)
    expect(cards(page, TODO)).to_have_count(2)

    search(page, word)
    expect(card(page, found.title)).to_have_count(1)
    expect(card(page, other.title)).to_have_count(0)
    expect(count(page, TODO)).to_have_text("(1)")

    search(page, word[:-3] + "*")  # a prefix
    expect(card(page, found.title)).to_have_count(1)
    expect(card(page, other.title)).to_have_count(0)

    search(page, "")
    expect(cards(page, TODO)).to_have_count(2)


def test_a_filter_expression_narrows_every_column(open_page: Any, board: Board) -> None:  # noqa: F811
    name, label = user(), "expr-" + uuid.uuid4().hex[:8]
    urgent = create(board, name, title=f"{label} urgent", priority=pb.PRIORITY_CRITICAL, labels=[label])
    high = create(board, name, title=f"{label} high", priority=pb.PRIORITY_HIGH, labels=[label])
    low = create(board, name, title=f"{label} low", priority=pb.PRIORITY_LOW, labels=[label])
    stub = board.server.stub()
    stub.UpdateTask(pb.UpdateTaskRequest(id=high.id, status=DONE), metadata=metadata(board, name))
    page = open_page(name)
    only_label(page, label)
    expect(count(page, TODO)).to_have_text("(2)")

    search(page, "priority >= HIGH")
    expect(count(page, TODO)).to_have_text("(1)")
    expect(count(page, DONE)).to_have_text("(1)")
    expect(cards(page, TODO).filter(has_text=urgent.title)).to_have_count(1)
    expect(cards(page, DONE).filter(has_text=high.title)).to_have_count(1)
    expect(card(page, low.title)).to_have_count(0)
    expect(page.get_by_test_id("search-error")).to_have_text("")


def test_a_bad_filter_shows_the_servers_error_and_keeps_the_board(open_page: Any, board: Board) -> None:  # noqa: F811
    name, label = user(), "bad-" + uuid.uuid4().hex[:8]
    first = create(board, name, title=f"{label} first", labels=[label])
    second = create(board, name, title=f"{label} second", labels=[label])
    page = open_page(name)
    only_label(page, label)
    search(page, "second")
    expect(cards(page, TODO)).to_have_count(1)

    box = page.get_by_test_id("filter-search")
    box.fill("status = PURPLE")
    error = page.get_by_test_id("search-error")
    expect(error).to_contain_text("at column 10")
    expect(error).to_contain_text("PURPLE")
    expect(error).to_have_attribute("aria-live", "polite")
    expect(box).to_have_attribute("aria-invalid", "true")
    # The board keeps the last search it could show, and stays live under it.
    expect(page.locator("#columns")).to_have_attribute("data-filters", re.compile("query=second"))
    expect(cards(page, TODO)).to_have_count(1)
    expect(card(page, second.title)).to_have_count(1)
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "live")
    moved = create(board, name, title=f"{label} second, again", labels=[label])
    expect(card(page, moved.title)).to_have_count(1)

    search(page, "")
    expect(error).to_have_text("")
    expect(box).to_have_attribute("aria-invalid", "false")
    expect(card(page, first.title)).to_have_count(1)


@pytest.mark.parametrize("text", ["kiwi", 'title:"kiwi"'], ids=["query", "filter"])
def test_tasks_from_another_client_follow_the_active_search(open_page: Any, board: Board, text: str) -> None:  # noqa: F811
    name, label = user(), "live-" + uuid.uuid4().hex[:8]
    kept = create(board, name, title=f"{label} kiwi kept", labels=[label])
    page = open_page(name)
    only_label(page, label)
    search(page, text)
    expect(cards(page, TODO)).to_have_count(1)

    matching = create(board, name, title=f"{label} kiwi new", labels=[label])
    missing = create(board, name, title=f"{label} mango new", labels=[label])
    expect(card(page, matching.title)).to_have_count(1)
    expect(count(page, TODO)).to_have_text("(2)")

    # A loaded card that stops matching leaves; one that starts matching comes in; moves follow.
    stub, meta = board.server.stub(), metadata(board, name)
    stub.UpdateTask(pb.UpdateTaskRequest(id=kept.id, title=f"{label} plum"), metadata=meta)
    stub.UpdateTask(pb.UpdateTaskRequest(id=missing.id, title=f"{label} kiwi at last"), metadata=meta)
    stub.UpdateTask(pb.UpdateTaskRequest(id=matching.id, status=IN_PROGRESS), metadata=meta)
    expect(card(page, f"{label} kiwi at last")).to_have_count(1)
    expect(card(page, f"{label} plum")).to_have_count(0)
    expect(cards(page, IN_PROGRESS).filter(has_text=matching.title)).to_have_count(1)
    expect(count(page, TODO)).to_have_text("(1)")
    expect(count(page, IN_PROGRESS)).to_have_text("(1)")

    page.wait_for_timeout(500)  # the board has settled: nothing that does not match came back
    expect(card(page, f"{label} plum")).to_have_count(0)
    expect(card(page, missing.title)).to_have_count(0)
    expect(page.get_by_test_id("task-card")).to_have_count(2)


def test_the_editor_shows_the_tasks_history(open_page: Any, board: Board) -> None:  # noqa: F811
    name, label = user(), "hist-" + uuid.uuid4().hex[:8]
    task = create(board, name, title=f"{label} draft", labels=[label])
    stub, meta = board.server.stub(), metadata(board, name)
    stub.UpdateTask(
        pb.UpdateTaskRequest(id=task.id, title=f"{label} final", priority=pb.PRIORITY_HIGH), metadata=meta
    )
    page = open_page(name)
    only_label(page, label)
    card(page, f"{label} final").get_by_test_id("task-edit").click()
    entries = page.get_by_test_id("history-entry")
    expect(entries).to_have_count(2)
    expect(entries.nth(0)).to_contain_text("Created")
    expect(entries.nth(1)).to_contain_text("Changed")
    expect(entries.nth(1)).to_contain_text("title")
    expect(entries.nth(1)).to_contain_text("priority")
    if board.secret is not None:  # under --auth none every caller is the same admin
        expect(entries.nth(1)).to_contain_text(f"by {name}")

    # A change made in the editor appears in the history the next time it is opened.
    page.get_by_test_id("edit-status").select_option(label="Done")
    page.get_by_test_id("edit-save").click()
    expect(page.locator("#editor")).not_to_be_visible()
    cards(page, DONE).filter(has_text=f"{label} final").get_by_test_id("task-edit").click()
    expect(entries).to_have_count(3)
    expect(entries.nth(2)).to_contain_text("status")


def test_a_long_history_is_paged(open_page: Any, board: Board) -> None:  # noqa: F811
    name, label = user(), "long-" + uuid.uuid4().hex[:8]
    task = create(board, name, title=f"{label} busy", labels=[label])
    stub, meta = board.server.stub(), metadata(board, name)
    for i in range(60):
        stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, description=f"step {i}"), metadata=meta)
    page = open_page(name)
    only_label(page, label)
    card(page, f"{label} busy").get_by_test_id("task-edit").click()
    entries = page.get_by_test_id("history-entry")
    expect(entries).to_have_count(50)
    page.get_by_test_id("history-more").click()
    expect(entries).to_have_count(61)
    expect(page.get_by_test_id("history-more")).to_be_hidden()


def test_search_and_history_have_no_serious_accessibility_violations(open_page: Any, board: Board) -> None:  # noqa: F811
    need(AXE.is_file(), "axe-core is not installed (cd web && npm ci)")
    name, label = user(), "axe-s-" + uuid.uuid4().hex[:8]
    create(board, name, title=f"{label} one", labels=[label])
    page = open_page(name)
    only_label(page, label)
    page.get_by_test_id("filter-search").fill("status = PURPLE")
    expect(page.get_by_test_id("search-error")).to_contain_text("at column")
    violations = _axe(page)
    assert not violations, [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in violations]
    card(page, f"{label} one").get_by_test_id("task-edit").click()
    expect(page.get_by_test_id("history-entry")).to_have_count(1)
    violations = _axe(page)
    assert not violations, [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in violations]
