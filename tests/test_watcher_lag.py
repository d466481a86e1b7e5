"""The event window knows how many watchers follow it and how far the slowest is behind the head."""

from __future__ import annotations

import asyncio

from taskservice.access.caller import ANONYMOUS_ADMIN
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.events import EventWindow
from taskservice.domain.paging import PageTokens
from taskservice.domain.service import TaskService
from taskservice.store.sqlite import SQLiteStore


async def _lag_while_a_watcher_sends() -> None:
    store = SQLiteStore(None, durable=False)
    await store.open()
    try:
        window = EventWindow(store)
        await window.start()
        service = TaskService(store, window, PageTokens(await store.secret("page-tokens")))

        async def create() -> None:
            await service.create(ANONYMOUS_ADMIN, pb.CreateTaskRequest(title="lag"))

        follower = window.follow(window.head)
        first = asyncio.ensure_future(anext(follower))
        await create()
        assert len(await first) == 1
        assert (window.watchers, window.lag()) == (1, 1)  # the batch is handed over, not yet sent
        for _ in range(3):
            await create()
        assert window.lag() == 4
        second = await anext(follower)  # asking for more means the first batch went out
        assert len(second) == 3
        assert window.lag() == 3
        await follower.aclose()
        assert (window.watchers, window.lag()) == (0, 0)
    finally:
        await store.close()


def test_lag_counts_events_not_yet_sent_to_the_slowest_watcher() -> None:
    asyncio.run(_lag_while_a_watcher_sends())
