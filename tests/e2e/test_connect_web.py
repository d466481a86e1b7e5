"""@connectrpc/connect-web's Connect transport (the generated TaskService client, JSON and binary)
against the server's Connect side, in a real browser: unary calls, errors and WatchTasks streaming."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from taskservice.api import task_service_pb2 as pb
from tests.e2e.conftest import Board

pytestmark = pytest.mark.browser
FORMATS = {"json": False, "binary": True}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_connect_web_unary_call(compat_page: Any, board: Board, fmt: str) -> None:
    label = "cw-" + uuid.uuid4().hex[:8]
    token = board.token("alice") or ""
    task_id = compat_page.evaluate(
        "([b, l, t, f]) => window.connectWeb.create(b, 'made by connect-web ' + f, l, t)",
        [FORMATS[fmt], label, token, fmt],
    )
    metadata = [("authorization", f"Bearer {token}")] if token else []
    task = board.server.stub().GetTask(pb.GetTaskRequest(id=task_id), metadata=metadata)
    assert task.title == f"made by connect-web {fmt}" and list(task.labels) == [label]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_connect_web_reads_error_codes(compat_page: Any, board: Board, fmt: str) -> None:
    error = compat_page.evaluate(
        "([b, t]) => window.connectWeb.missing(b, t)", [FORMATS[fmt], board.token("alice") or ""]
    )
    assert error["code"] == 5 and "not found" in error["message"]  # Code.NotFound


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_connect_web_streams_watch_events(compat_page: Any, board: Board, fmt: str) -> None:
    label = "cw-" + uuid.uuid4().hex[:8]
    token = board.token("alice") or ""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    stub = board.server.stub()
    stub.CreateTask(pb.CreateTaskRequest(title="first", labels=[label]), metadata=metadata)
    compat_page.evaluate(
        "([b, l, t]) => { window.connectWatching = window.connectWeb.watch(b, l, 2, t); }",
        [FORMATS[fmt], label, token],
    )
    compat_page.wait_for_timeout(300)  # let the stream open before the live event
    stub.CreateTask(pb.CreateTaskRequest(title="second", labels=[label]), metadata=metadata)
    assert compat_page.evaluate("() => window.connectWatching") == ["first", "second"]
