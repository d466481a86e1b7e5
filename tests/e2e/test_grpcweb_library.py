"""The grpc-web client library, as existing browser clients of this API use it, against the server.

Its default text mode (`application/grpc-web-text`) is what connect-python refused; here it and the
binary mode must both work for unary calls, errors and server streaming, in a real browser.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from taskservice.api import task_service_pb2 as pb
from tests.e2e.conftest import Board

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_grpc_web_library_unary_call(compat_page: Any, board: Board, fmt: str) -> None:
    label = "gw-" + uuid.uuid4().hex[:8]
    token = board.token("alice") or ""
    task_id = compat_page.evaluate(
        "([f, l, t]) => window.grpcWeb.create(f, 'made by grpc-web ' + f, l, t)", [fmt, label, token]
    )
    metadata = [("authorization", f"Bearer {token}")] if token else []
    task = board.server.stub().GetTask(pb.GetTaskRequest(id=task_id), metadata=metadata)
    assert task.title == f"made by grpc-web {fmt}" and list(task.labels) == [label]


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_grpc_web_library_reads_error_status(compat_page: Any, board: Board, fmt: str) -> None:
    error = compat_page.evaluate(
        "([f, t]) => window.grpcWeb.missing(f, t)", [fmt, board.token("alice") or ""]
    )
    assert error["code"] == 5  # NOT_FOUND
    assert "not found" in error["message"]


def test_grpc_web_library_streams_watch_events_in_text_mode(compat_page: Any, board: Board) -> None:
    # Text mode only: the library's binary mode reads a whole XHR response, so it cannot stream
    # (its README says so). Binary streaming is what the board itself uses, through connect-web.
    fmt = "text"
    label = "gw-" + uuid.uuid4().hex[:8]
    token = board.token("alice") or ""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    stub = board.server.stub()
    stub.CreateTask(pb.CreateTaskRequest(title="first", labels=[label]), metadata=metadata)
    compat_page.evaluate(
        "([f, l, t]) => { window.watching = window.grpcWeb.watch(f, l, 2, t); }", [fmt, label, token]
    )
    compat_page.wait_for_timeout(300)  # let the stream open before the live event
    stub.CreateTask(pb.CreateTaskRequest(title="second", labels=[label]), metadata=metadata)
    assert compat_page.evaluate("() => window.watching") == ["first", "second"]
