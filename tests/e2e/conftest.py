"""Browser fixtures: Playwright driving Debian's Chromium (never a downloaded browser).

The tests skip with a visible reason when Chromium or the built board is missing, unless
TASKSERVICE_REQUIRE_BROWSER=1 (set by .ci/run), where a missing piece is a failure.
"""

from __future__ import annotations

import dataclasses
import mimetypes
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from taskservice.server.config import Settings
from tests.servers import ROOT, ServerProcess

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("TASKSERVICE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (TASKSERVICE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def chromium_path() -> str | None:
    return (
        os.environ.get("TASKSERVICE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


def supports_jwt() -> bool:
    """True once the server has `--auth jwt` with a shared-secret file (docs/security.md)."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    return "jwt" in (fields["auth"].metadata.get("choices") or ()) and "jwt_secret_file" in fields


@dataclasses.dataclass
class Board:
    """The server the browser tests use, and how to sign in to it."""

    server: ServerProcess
    secret: str | None

    @property
    def url(self) -> str:
        return self.server.http_url + "/"

    def token(self, user: str, admin: bool = False) -> str | None:
        """A token for `user` when the server checks JWTs; None under --auth none (everyone is admin)."""
        if self.secret is None:
            return None
        claims = {"sub": user, "roles": ["admin"] if admin else [], "exp": int(time.time()) + 3600}
        return jwt.encode(claims, self.secret, algorithm="HS256")


# Module scope on purpose: Playwright's sync API keeps an event loop running in the main thread while
# it is open, which would break asyncio.run() in any test that ran after a session-long browser.
@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    path = chromium_path()
    need(path is not None, "no Chromium found (apt-get install chromium, or scripts/ci-services.sh)")
    need((ROOT / "web" / "dist" / "index.html").is_file(), "the board is not built (needs Node.js: make web)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "the playwright package is not installed (make install)")
        raise
    with sync_playwright() as playwright:
        # Playwright gives each launch a fresh temporary --user-data-dir of its own.
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    data = tmp_path_factory.mktemp("board")
    args: list[str] = []
    secret: str | None = None
    if supports_jwt():
        secret = secrets.token_hex(32)
        secret_file = data / "jwt-secret"
        secret_file.write_text(secret)
        args += ["--auth", "jwt", "--jwt-secret-file", str(secret_file)]
    proc = ServerProcess(data / "server", *args)
    # The board is also opened from http://localhost:PORT, a second origin, for a real CORS check.
    proc.args += ["--cors-origin", f"http://localhost:{proc.http_port}"]
    proc.start()
    yield Board(proc, secret)
    proc.stop()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


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
