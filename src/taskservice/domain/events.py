"""The shared window of recent events that every watcher reads from.

Writers append committed events once; watchers keep only a cursor (the last sequence they sent) and
read forward from it. There are no per-watcher queues, so nothing can overflow and a slow watcher
only falls behind itself: when its cursor drops out of the window it reads from the store's event
log until it catches up, and when the log no longer has it, it gets OUT_OF_RANGE. A watch lives no
longer than its caller's credentials: it ends with UNAUTHENTICATED once they expire, saying where
to resume.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import AsyncGenerator

from taskservice.domain.errors import OutOfRange, Unauthenticated, Unavailable
from taskservice.store.base import StoredEvent, TaskStore

_LOG_BATCH = 1000


class _Follower:
    """One watcher's progress: the last sequence whose batch it finished sending."""

    __slots__ = ("delivered",)

    def __init__(self, delivered: int) -> None:
        self.delivered = delivered


class EventWindow:
    def __init__(self, store: TaskStore, capacity: int = 50_000) -> None:
        self._store = store
        self._capacity = capacity
        self._sequences: list[int] = []
        self._events: list[StoredEvent] = []
        self._head = 0
        self._floor = 0  # the window holds every event with floor < sequence <= head
        self._wakeup: asyncio.Future[None] | None = None
        self._closed = False
        self._followers: set[_Follower] = set()

    async def start(self) -> None:
        self._store.subscribe(self.publish)
        self._head = self._floor = (await self._store.event_bounds()).head

    @property
    def head(self) -> int:
        return self._head

    @property
    def watchers(self) -> int:
        """How many watchers are following the window now."""
        return len(self._followers)

    def lag(self) -> int:
        """The largest lag of any watcher: head minus the last sequence it was sent."""
        head = self._head
        return max((head - f.delivered for f in self._followers), default=0)

    def publish(self, events: list[StoredEvent]) -> None:
        """Append committed events (in sequence order) and wake every waiting watcher."""
        for event in events:
            if event.sequence <= self._head:
                continue
            self._sequences.append(event.sequence)
            self._events.append(event)
            self._head = event.sequence
        excess = len(self._events) - self._capacity
        if excess > self._capacity // 4:  # trim in chunks: deleting from a list's front is O(n)
            self._floor = self._sequences[excess - 1]
            del self._sequences[:excess]
            del self._events[:excess]
        self._wake()

    def close(self) -> None:
        """End every follower with UNAVAILABLE (the server is shutting down)."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        self._wakeup = None

    async def _changed(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._wakeup)

    async def follow(self, after: int, until: float | None = None) -> AsyncGenerator[list[StoredEvent], None]:
        """Yield batches of events with sequence > `after`, in order, forever (until closed), or
        until the wall-clock time `until` (the watcher's credentials expire: Unauthenticated)."""
        cursor = after
        follower = _Follower(after)
        self._followers.add(follower)
        try:
            while True:
                if self._closed:
                    raise Unavailable("the server is shutting down; reconnect and resume with after_sequence")
                if until is not None and time.time() >= until:
                    raise Unauthenticated(
                        "the token has expired; reconnect with a fresh token and resume with "
                        f"after_sequence {cursor}",
                        "expired",
                    )
                batch = await self._read(cursor)
                if batch:
                    cursor = batch[-1].sequence
                    yield batch
                    follower.delivered = cursor  # the consumer asks for more only once it sent the batch
                elif until is None:
                    await self._changed()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed(), max(until - time.time(), 0.0))
        finally:
            self._followers.discard(follower)

    async def _read(self, cursor: int) -> list[StoredEvent]:
        if cursor >= self._head:
            return []
        if cursor >= self._floor:
            start = bisect.bisect_right(self._sequences, cursor)
            return self._events[start : start + _LOG_BATCH]
        # Behind the window: read the durable log, which must still hold the next event.
        await self.check_resumable(cursor)
        return await self._store.events_after(cursor, _LOG_BATCH)

    async def check_resumable(self, after: int) -> None:
        """Raise OutOfRange unless the events after `after` are all still retained (the one place
        that decides whether a watch can resume from a sequence)."""
        bounds = await self._store.event_bounds()
        if after < bounds.horizon:
            raise OutOfRange(
                f"events after sequence {after} are no longer retained (oldest available starts after "
                f"{bounds.horizon}); reload the current state with include_initial"
            )
        if after > bounds.head:
            raise OutOfRange(f"after_sequence {after} is ahead of the newest event ({bounds.head})")
