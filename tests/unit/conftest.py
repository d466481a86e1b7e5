"""The in-process tier: rules checked without a server, each test in milliseconds.

`TaskService` runs over the `memory://` store (SQLite without fsync, in a temporary file) on an
event loop the `app` fixture owns; tests drive it with `app.run(...)`. One store serves the whole
session (closing a store waits for its bulk process to finish starting, about a second), so each
test acts as users of its own (`people`): nobody else's tasks are visible to them. The
real-server tests in tests/ check the same rules over the wire.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

from taskservice.access.caller import Caller
from taskservice.domain.events import EventWindow
from taskservice.domain.paging import PageTokens
from taskservice.domain.service import TaskService
from taskservice.store import open_store

T = TypeVar("T")


@dataclass
class InProcess:
    """A service over an in-memory store, and the way to run its coroutines."""

    service: TaskService
    runner: asyncio.Runner

    def run(self, call: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await call

        return self.runner.run(wrapped())


@pytest.fixture(scope="session")
def app() -> Iterator[InProcess]:
    with asyncio.Runner() as runner:
        store = open_store("memory://", "")

        async def start() -> TaskService:
            await store.open()
            window = EventWindow(store)
            await window.start()
            return TaskService(store, window, PageTokens(await store.secret("page-tokens")))

        service = runner.run(start())
        try:
            yield InProcess(service, runner)
        finally:
            runner.run(store.close())


@dataclass(frozen=True)
class People:
    """Two users and a label no other test uses, plus an admin (who sees every test's tasks)."""

    alice: Caller
    bob: Caller
    admin: Caller
    tag: str


@pytest.fixture
def people() -> People:
    suffix = uuid.uuid4().hex[:8]
    return People(Caller(f"alice-{suffix}"), Caller(f"bob-{suffix}"), Caller("root", is_admin=True), suffix)
