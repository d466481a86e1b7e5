"""The grpc-web client library, as existing browser clients of this API use it, against the server.

Its default text mode (`application/grpc-web-text`) is what connect-python refused; here it and the
binary mode must both work for unary calls, errors and server streaming, in a real browser.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taskservice.api import task_service_pb2 as pb
from tests.e2e.conftest import Board, need
from tests.servers import ROOT

pytestmark = pytest.mark.browser
COMPAT = ROOT / "web" / "dist-compat"


@pytest.fixture(scope="module")
def compat_page(chromium: Any, board: Board) -> Iterator[Any]:
    """The compat page, served on the server's own origin from the build output (not by the server)."""
    need((COMPAT / "index.html").is_file(), "the grpc-web check page is not built (make web)")
    context = chromium.new_context()
    origin = board.server.http_url

    def serve(route: Any) -> None:
        relative = route.request.url.removeprefix(origin + "/compat/").split("?")[0] or "index.html"
        path = (COMPAT / relative).resolve()
        if not path.is_relative_to(COMPAT.resolve()) or not path.is_file():
            route.fulfill(status=404)
            return
        route.fulfill(path=str(path), content_type=mimetypes.guess_type(path.name)[0] or "text/plain")

    context.route(f"{origin}/compat/**", serve)
    page = context.new_page()
    page.goto(f"{origin}/compat/index.html")
    page.wait_for_selector("body[data-ready=true]")
    yield page
    context.close()


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
