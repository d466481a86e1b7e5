"""A browser page using `EventSource` on /v1/tasks:watch stays live across a server restart:
it reconnects by itself with Last-Event-ID and receives what happened, once, in order."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.servers import ServerProcess

LISTEN = """([url]) => {
  window.received = [];
  window.opened = 0;
  const source = new EventSource(url);
  source.onopen = () => { window.opened += 1; };
  source.onmessage = (message) => {
    window.received.push({id: message.lastEventId, task: JSON.parse(message.data).task.title});
  };
}"""


def wait_until(page: Any, expression: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{expression} stayed false: {page.evaluate('window.received')}")


def test_event_source_stays_live_across_a_restart(chromium: Any, tmp_path: Path) -> None:
    proc = ServerProcess.jwt(tmp_path / "sse-browser").start()
    context = chromium.new_context()
    try:
        token = proc.token("alice")
        headers = {"authorization": f"Bearer {token}"}

        def create(title: str) -> None:
            answer = httpx.post(
                f"{proc.http_url}/v1/tasks", json={"title": title, "labels": ["live"]}, headers=headers
            )
            assert answer.status_code == 200, answer.text

        page = context.new_page()
        page.goto(f"{proc.http_url}/healthz")  # any page of the server's origin
        page.evaluate(LISTEN, [f"/v1/tasks:watch?labels=live&access_token={token}"])
        wait_until(page, "window.opened === 1")
        create("before the restart")
        wait_until(page, "window.received.length === 1")
        proc.stop()
        proc.start()
        create("after the restart")
        wait_until(page, "window.opened >= 2 && window.received.length === 2")
        create("and later")
        received = wait_until(page, "window.received.length === 3 && window.received")
        assert [r["task"] for r in received] == ["before the restart", "after the restart", "and later"]
        ids = [int(r["id"]) for r in received]
        assert ids == sorted(ids) and len(set(ids)) == 3
    finally:
        context.close()
        proc.stop()
