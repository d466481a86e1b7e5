"""Reading the store's event log forward from a durable cursor, waking as soon as events commit.

Webhooks and exporters read the log itself, not the in-memory window watchers share: their cursor is
stored (in the webhook's row, or in the broker), so after a restart they resume exactly where they
were, however far behind that is.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from taskservice.store.base import StoredEvent, TaskStore

log = structlog.get_logger(__name__)

_POLL = 1.0  # also re-read this often, in case a wake-up was missed


class LogFollower:
    """Shared by every webhook worker and exporter of one server: one store subscription, one head."""

    def __init__(self, store: TaskStore) -> None:
        self._store = store
        self._head = 0
        self._changed = asyncio.Event()

    async def start(self) -> None:
        self._store.subscribe(self._on_events)
        self._head = max(self._head, (await self._store.event_bounds()).head)

    @property
    def head(self) -> int:
        """The newest event sequence this server has seen committed."""
        return self._head

    def _on_events(self, events: list[StoredEvent]) -> None:
        self._head = max(self._head, events[-1].sequence)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def next_batch(self, after: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` events with sequence > `after`, waiting until there is at least one.
        Events the log no longer holds (pruned while the reader was away) are skipped, with a warning."""
        while True:
            changed = self._changed  # taken before reading: a commit in between still wakes us
            events = await self._store.events_after(after, limit)
            if events:
                if events[0].sequence > after + 1:
                    log.warning("events.skipped_pruned", after=after, next=events[0].sequence)
                self._head = max(self._head, events[-1].sequence)
                return events
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), _POLL)
