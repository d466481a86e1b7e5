"""The task board in a real browser: live updates between pages, edits, deletes, reconnects."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.e2e.conftest import Board
from tests.servers import ROOT

pytestmark = pytest.mark.browser

expect: Any = None  # playwright.sync_api.expect, imported once Chromium is known to be there


@pytest.fixture(autouse=True)
def _expect(chromium: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=5_000)
    expect = playwright_expect


@pytest.fixture
def open_page(chromium: Any, board: Board) -> Iterator[Any]:
    """Open the board in a fresh browser context (its own session storage: its own user)."""
    contexts: list[Any] = []

    def open_board(user: str | None = None, admin: bool = False, url: str | None = None) -> Any:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        token = board.token(user, admin) if user else None
        page.goto((url or board.url) + (f"#token={token}" if token else ""))
        expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "live")
        return page

    yield open_board
    for context in contexts:
        context.close()


def card(page: Any, title: str) -> Any:
    return page.get_by_test_id("task-card").filter(has_text=title)


def create_task(page: Any, title: str, assignee: str = "", labels: str = "") -> None:
    page.get_by_test_id("new-task-title").fill(title)
    page.get_by_test_id("new-task-labels").fill(labels)
    page.get_by_test_id("new-task-assignee").fill(assignee)
    page.get_by_test_id("new-task-submit").click()
    expect(card(page, title)).to_have_count(1)


def unique(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:8]}"


def test_task_created_in_one_page_appears_live_in_the_other(open_page: Any, artifacts: Path) -> None:
    alice = open_page("alice")
    bob = open_page("bob")
    assert "token" not in alice.url  # moved into session storage, out of the address and history
    title = unique("Review the board")
    create_task(alice, title, assignee="bob", labels="web, e2e")
    arrived = card(bob, title)
    expect(arrived).to_have_count(1)
    expect(arrived).to_contain_text("@bob")
    expect(arrived.get_by_role("list", name="Labels")).to_contain_text("e2e")
    bob.screenshot(path=str(artifacts / "board.png"), full_page=True)
    bob.set_viewport_size({"width": 390, "height": 844})  # a phone: columns stack, nothing overflows
    assert bob.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    bob.screenshot(path=str(artifacts / "board-phone.png"), full_page=True)


def test_task_appears_only_for_users_who_may_see_it(open_page: Any, board: Board) -> None:
    if board.secret is None:
        pytest.skip("needs `--auth jwt`: under --auth none every page is the same admin user")
    alice = open_page("alice")
    bob = open_page("bob")
    carol = open_page("carol")
    private = unique("Only alice")
    shared = unique("For bob")
    create_task(alice, private)
    create_task(alice, shared, assignee="bob")
    # Events arrive in order: once the later task is on bob's board, the earlier one would be too.
    expect(card(bob, shared)).to_have_count(1)
    expect(card(bob, private)).to_have_count(0)
    admin = open_page("root", admin=True)
    expect(card(admin, private)).to_have_count(1)
    expect(card(carol, shared)).to_have_count(0)
    expect(carol.get_by_test_id("task-card")).to_have_count(0)


def test_edit_move_and_delete_propagate(open_page: Any) -> None:
    alice = open_page("alice")
    bob = open_page("bob")
    title = unique("Draft")
    create_task(alice, title, assignee="bob")
    expect(card(bob, title)).to_have_count(1)

    card(alice, title).get_by_test_id("task-edit").click()
    renamed = unique("Final")
    alice.get_by_test_id("edit-title").fill(renamed)
    alice.get_by_test_id("edit-save").click()
    expect(card(bob, renamed)).to_have_count(1)
    expect(card(bob, title)).to_have_count(0)

    card(alice, renamed).get_by_test_id("task-status").select_option(label="In progress")
    expect(
        bob.locator('section[data-status="2"]').get_by_test_id("task-card").filter(has_text=renamed)
    ).to_have_count(1)

    card(alice, renamed).get_by_test_id("task-edit").click()
    alice.get_by_test_id("edit-delete").click()
    expect(card(alice, renamed)).to_have_count(0)
    expect(card(bob, renamed)).to_have_count(0)


def test_dropped_connection_recovers_and_catches_up(open_page: Any, board: Board) -> None:
    page = open_page("alice")
    watch_requests: list[pb.WatchTasksRequest] = []

    def record(request: Any) -> None:
        if request.url.endswith("/WatchTasks"):
            watch_requests.append(pb.WatchTasksRequest.FromString(request.post_data_buffer[5:]))

    page.on("request", record)
    before = unique("Before the drop")
    create_task(page, before)
    state = page.get_by_test_id("connection-state")

    # Cut the page off, and drop its open watch by restarting the server (events are durable).
    page.context.set_offline(True)
    board.server.restart()
    expect(state).to_have_attribute("data-state", "reconnecting")
    # Written elsewhere while this page is cut off: it must arrive once the page is back.
    missed = unique("Missed while offline")
    metadata = [("authorization", f"Bearer {board.token('alice')}")] if board.secret else []
    board.server.stub().CreateTask(pb.CreateTaskRequest(title=missed), metadata=metadata)
    page.context.set_offline(False)

    expect(state).to_have_attribute("data-state", "live", timeout=10_000)
    expect(card(page, missed)).to_have_count(1)
    expect(card(page, before)).to_have_count(1)
    # It resumed from the last event it had, not by reloading everything.
    assert watch_requests and watch_requests[-1].after_sequence > 0
    assert not watch_requests[-1].include_initial


def test_board_calls_the_api_from_another_allowed_origin(open_page: Any, board: Board) -> None:
    page = open_page("alice", url=f"http://localhost:{board.server.http_port}/")
    token = board.token("alice") or ""
    request = pb.CreateTaskRequest(title=unique("Cross-origin")).SerializeToString()
    framed = list(b"\x00" + len(request).to_bytes(4, "big") + request)
    result = page.evaluate(
        """async ([url, body, token]) => {
            const headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"};
            if (token) headers["authorization"] = "Bearer " + token;
            const answer = await fetch(url, {method: "POST", headers, body: new Uint8Array(body)});
            const bytes = new Uint8Array(await answer.arrayBuffer());
            return {status: answer.status, bytes: Array.from(bytes)};
        }""",
        [f"http://127.0.0.1:{board.server.http_port}/taskservice.TaskService/CreateTask", framed, token],
    )
    assert result["status"] == 200
    body = bytes(result["bytes"])
    assert b"grpc-status: 0\r\n" in body
    assert pb.Task.FromString(body[5 : 5 + int.from_bytes(body[1:5], "big")]).title.startswith("Cross-origin")


def test_metrics_panel_shows_the_servers_own_figures(open_page: Any) -> None:
    page = open_page("alice")
    page.get_by_text("Server metrics").click()
    panel = page.get_by_test_id("metrics")
    expect(panel).to_contain_text("Calls handled")
    # This page's own watch is open, so the server counts at least one.
    watches = panel.get_by_role("row", name=re.compile("Open watches")).locator("td")
    expect(watches).to_have_text(re.compile(r"^[1-9]"))


def test_sign_in_box_takes_a_pasted_token(chromium: Any, board: Board) -> None:
    if board.secret is None:
        pytest.skip("needs `--auth jwt`: under --auth none nobody has to sign in")
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(board.url)
        expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "signed-out")
        page.get_by_label("Access token").fill(board.token("alice") or "")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "live")
        expect(page.get_by_text("Signed in as alice")).to_be_visible()
    finally:
        context.close()


def test_task_created_by_a_grpc_client_appears_within_a_second(open_page: Any, board: Board) -> None:
    page = open_page("dana")
    title = unique("From taskctl")
    metadata = [("authorization", f"Bearer {board.token('dana')}")] if board.secret else []
    board.server.stub().CreateTask(
        pb.CreateTaskRequest(title=title, priority=pb.PRIORITY_HIGH), metadata=metadata
    )
    expect(card(page, title)).to_have_count(1, timeout=1_000)
    expect(card(page, title)).to_contain_text("High")


def test_saving_over_a_newer_version_is_refused_not_overwritten(open_page: Any, board: Board) -> None:
    page = open_page("erin")
    title = unique("Contested")
    create_task(page, title)
    card(page, title).get_by_test_id("task-edit").click()  # the editor holds version 1
    task_id = card(page, title).get_attribute("data-task-id")
    metadata = [("authorization", f"Bearer {board.token('erin')}")] if board.secret else []
    board.server.stub().UpdateTask(
        pb.UpdateTaskRequest(id=task_id, description="changed elsewhere"), metadata=metadata
    )
    expect(card(page, title)).to_contain_text("changed elsewhere")  # the live view has the change
    page.get_by_test_id("edit-title").fill(title + " (mine)")
    page.get_by_test_id("edit-save").click()
    expect(page.locator("#editor .editor-error")).to_contain_text("Someone else changed this task first")
    # The editor now holds the newer version, so saving again is a deliberate overwrite that works.
    expect(page.locator("#editor textarea[name=description]")).to_have_value("changed elsewhere")
    task = board.server.stub().GetTask(pb.GetTaskRequest(id=task_id), metadata=metadata)
    assert task.title == title and task.description == "changed elsewhere"
    page.get_by_test_id("edit-title").fill(title + " (mine)")
    page.get_by_test_id("edit-save").click()
    expect(card(page, title + " (mine)")).to_have_count(1)


def test_webhooks_panel_lists_only_the_users_own_webhooks(open_page: Any, board: Board) -> None:
    hooks = rpc.WebhookServiceStub(board.server.channel())

    def create(user: str, url: str) -> None:
        metadata = [("authorization", f"Bearer {board.token(user)}")] if board.secret else []
        hooks.CreateWebhook(pb.CreateWebhookRequest(url=url), metadata=metadata)

    mine, theirs = f"https://93.184.215.14/{uuid.uuid4().hex}", f"https://93.184.215.14/{uuid.uuid4().hex}"
    create("wendy", mine)
    create("xavier", theirs)
    page = open_page("wendy")
    page.get_by_text("Your webhooks").click()
    rows = page.get_by_test_id("webhook-row")
    expect(rows.filter(has_text=mine)).to_have_count(1)
    expect(rows.filter(has_text=mine)).to_contain_text("active")
    if board.secret:  # under --auth none everyone is the admin, who sees every webhook
        expect(rows.filter(has_text=theirs)).to_have_count(0)


def test_html_in_a_title_is_shown_as_text_never_run(open_page: Any) -> None:
    """A title and label that are HTML arrive on another user's board as text: no element is made
    from them and no script runs."""
    alice, bob = open_page("alice"), open_page("bob")
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    bob.on("dialog", on_dialog)
    title = f"<img src=x onerror=alert(1)> {uuid.uuid4().hex[:8]}"
    create_task(alice, title, assignee="bob", labels="<b>bold</b>")
    arrived = card(bob, title)
    expect(arrived).to_have_count(1)
    expect(arrived).to_contain_text(title)
    expect(arrived.get_by_role("list", name="Labels")).to_contain_text("<b>bold</b>")
    assert arrived.locator("img, b").count() == 0
    bob.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert dialogs == []


def test_board_sources_never_write_html() -> None:
    """Text reaches the page through textContent and the `h` builder only (web/src/dom.ts)."""
    sources = (ROOT / "web" / "src").glob("*.ts")
    risky = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "DOMParser")
    found = [(path.name, word) for path in sources for word in risky if word in path.read_text()]
    assert found == []
