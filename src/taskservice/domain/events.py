"""The shared window of recent events that every watcher reads from.

Writers append committed events once; watchers keep only a cursor (the last sequence they sent) and
read forward from it. There are no per-watcher queues, so nothing can overflow and a slow watcher
only falls behind itself: when its cursor drops out of the window it reads from the store's event
log until it catches up, and when the log no longer has it, it gets OUT_OF_RANGE. A watch lives no
longer than its caller's credentials: it ends with UNAUTHENTICATED once they expire, saying where
to resume.

The window is bounded by count and by bytes (an estimate of what each event holds in memory: the
task, its previous version and their encodings). An event too big for its share of the byte budget
is kept as its sequence only, and watchers read it from the store's log when they reach it, so a
user who writes the largest tasks over and over cannot make the window hold gigabytes.
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
_LOG_BIG_BATCH = 16  # events read from the log at once where the window holds only their sequence
DEFAULT_CAPACITY = 50_000
DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024
# The largest event the window holds, as a share of its byte budget; bigger ones are read from the log.
_MAX_EVENT_SHARE = 256
# Python and protobuf objects take more memory than their encoding: measured at about 1.4 times for
# large tasks, plus a fixed part per event.
_MEMORY_PER_ENCODED_BYTE = 1.5
_MEMORY_PER_EVENT = 1024


def event_cost(event: StoredEvent) -> int:
    """An estimate of the bytes `event` holds in memory."""
    encoded = event.task.ByteSize() + (event.previous.ByteSize() if event.previous is not None else 0)
    return int(encoded * _MEMORY_PER_ENCODED_BYTE) + _MEMORY_PER_EVENT


class _Follower:
    """One watcher's progress: the last sequence whose batch it finished sending."""

    __slots__ = ("delivered",)

    def __init__(self, delivered: int) -> None:
        self.delivered = delivered


class EventWindow:
    def __init__(
        self, store: TaskStore, capacity: int = DEFAULT_CAPACITY, budget_bytes: int = DEFAULT_BUDGET_BYTES
    ) -> None:
        self._store = store
        self._capacity = capacity
        self._budget = budget_bytes
        self._max_event = max(budget_bytes // _MAX_EVENT_SHARE, _MEMORY_PER_EVENT)
        self._sequences: list[int] = []
        self._events: list[StoredEvent | None] = []  # None: too big to hold, read from the log
        self._costs: list[int] = []
        self._bytes = 0
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

    @property
    def bytes(self) -> int:
        """The estimated bytes the window's events hold now (at most its budget)."""
        return self._bytes

    def lag(self) -> int:
        """The largest lag of any watcher: head minus the last sequence it was sent."""
        head = self._head
        return max((head - f.delivered for f in self._followers), default=0)

    def publish(self, events: list[StoredEvent]) -> None:
        """Append committed events (in sequence order) and wake every waiting watcher."""
        for event in events:
            if event.sequence <= self._head:
                continue
            cost = event_cost(event)
            held: StoredEvent | None = event
            if cost > self._max_event:
                held, cost = None, _MEMORY_PER_EVENT
            self._sequences.append(event.sequence)
            self._events.append(held)
            self._costs.append(cost)
            self._bytes += cost
            self._head = event.sequence
        self._trim()
        self._wake()

    def _trim(self) -> None:
        """Drop the oldest events once over the count or the byte budget, down to three quarters of
        each: in chunks, because deleting from a list's front is O(n)."""
        over_count = len(self._events) > self._capacity + self._capacity // 4
        if not (over_count or self._bytes > self._budget):
            return
        keep_count, keep_bytes = self._capacity * 3 // 4, self._budget * 3 // 4
        drop, dropped_bytes = max(0, len(self._events) - keep_count), 0
        dropped_bytes = sum(self._costs[:drop])
        while drop < len(self._events) and self._bytes - dropped_bytes > keep_bytes:
            dropped_bytes += self._costs[drop]
            drop += 1
        if drop == 0:
            return
        self._floor = self._sequences[drop - 1]
        del self._sequences[:drop]
        del self._events[:drop]
        del self._costs[:drop]
        self._bytes -= dropped_bytes

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
            held = self._events[start : start + _LOG_BATCH]
            batch: list[StoredEvent] = []
            for event in held:
                if event is None:
                    break
                batch.append(event)
            if batch:
                return batch
            # Too big to hold: read from the log, only as many as are not held (each may be large).
            big = next((n for n, event in enumerate(held[:_LOG_BIG_BATCH]) if event is not None), None)
            return await self._store.events_after(cursor, big or _LOG_BIG_BATCH)
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
