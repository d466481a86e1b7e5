"""Two users share a project on the board: each sees the other's changes live, subtasks sit under
their parent, and a member who is removed stops seeing the project and its tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_board
from tests.e2e.conftest import Board
from tests.e2e.test_board import card, open_page, unique  # noqa: F401  (open_page: a fixture)

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _expect(chromium: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=8_000)
    expect = test_board.expect = playwright_expect  # open_page uses test_board's


expect: Any = None


def add_task(page: Any, title: str) -> None:
    page.get_by_test_id("new-task-title").fill(title)
    page.get_by_test_id("new-task-submit").click()
    expect(card(page, title)).to_have_count(1)


def switch_to(page: Any, project: str) -> None:
    switcher = page.get_by_test_id("project-switcher")
    expect(switcher.get_by_role("option", name=project)).to_have_count(1)
    switcher.select_option(label=project)


def test_two_users_share_a_project_live(open_page: Any, board: Board, artifacts: Path) -> None:  # noqa: F811
    if board.secret is None:
        pytest.skip("needs `--auth jwt`: under --auth none every page is the same admin user")
    alice = open_page("alice-p")
    bob = open_page("bob-p")
    project = unique("Garden")
    alice.get_by_test_id("new-project-title").fill(project)
    alice.get_by_test_id("new-project-submit").click()
    expect(alice.get_by_test_id("project-switcher")).to_have_value(
        alice.get_by_test_id("project-switcher").get_by_role("option", name=project).get_attribute("value")
    )
    first = unique("Plant trees")
    add_task(alice, first)
    expect(card(bob, first)).to_have_count(0)

    alice.get_by_test_id("open-members").click()
    alice.get_by_test_id("member-user").fill("bob-p")
    alice.get_by_test_id("member-role").select_option("2")
    alice.get_by_test_id("member-add").click()
    expect(alice.get_by_test_id("member").filter(has_text="bob-p")).to_contain_text("Editor")
    alice.get_by_role("button", name="Close").click()

    # Bob's board learns of the project and its task without a reload.
    expect(card(bob, first)).to_have_count(1)
    switch_to(bob, project)
    second = unique("Buy seeds")
    add_task(bob, second)
    expect(card(alice, second)).to_have_count(1)
    card(bob, first).get_by_test_id("task-status").select_option("2")
    expect(
        alice.locator('[data-status="2"]').get_by_test_id("task-card").filter(has_text=first)
    ).to_have_count(1)

    child = unique("Dig holes")
    alice.once("dialog", lambda dialog: dialog.accept(child))
    card(alice, first).get_by_test_id("task-add-subtask").click()
    expect(card(bob, first).get_by_test_id("subtask").filter(has_text=child)).to_have_count(1)
    expect(bob.locator(".card-title", has_text=child)).to_have_count(0)  # not a card of its own
    bob.screenshot(path=str(artifacts / "board-project.png"), full_page=True)

    alice.get_by_test_id("open-members").click()
    alice.get_by_test_id("member").filter(has_text="bob-p").get_by_test_id("member-remove").click()
    expect(alice.get_by_test_id("member").filter(has_text="bob-p")).to_have_count(0)
    expect(bob.get_by_test_id("task-card").filter(has_text=first)).to_have_count(0)
    expect(card(bob, second)).to_have_count(0)
    expect(bob.get_by_test_id("project-switcher").get_by_role("option", name=project)).to_have_count(0)
    expect(card(alice, second)).to_have_count(1)  # the project's tasks stay for its members
