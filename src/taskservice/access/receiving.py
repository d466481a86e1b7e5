"""How many request messages one user's calls may be receiving at once.

grpcio holds a request message in memory until the whole of it has arrived (up to
--max-message-bytes), and the server sets no limit of calls per connection, so without this bound
one user with a token could leave thousands of calls each one byte short of its message. A call over
the user's share waits for a slot rather than failing: a well-behaved client's messages arrive at
once and free their slot, so only a client that leaves its own messages unfinished waits behind
them. Admins (trusted operators, and everyone under `--auth none`) are not counted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from taskservice.access.caller import Caller

T = TypeVar("T")


class ReceiveSlots:
    """At most `per_user` request messages being received per user; more wait in arrival order."""

    def __init__(self, per_user: int) -> None:
        self._per_user = per_user
        self._held: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    async def receive(self, caller: Caller, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`'s message, read while holding one of the caller's slots."""
        if caller.is_admin or self._per_user <= 0:
            return await read()
        user = caller.user_id
        await self._acquire(user)
        try:
            return await read()
        finally:
            self._release(user)

    def held(self, user: str) -> int:
        """Slots `user` holds now (for tests and metrics)."""
        return self._held.get(user, 0)

    async def _acquire(self, user: str) -> None:
        held = self._held.get(user, 0)
        if held < self._per_user:
            self._held[user] = held + 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(user, deque()).append(waiter)
        try:
            await waiter  # a released slot is handed over as it is: the count does not change
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(user)  # handed a slot in the same instant the call was cancelled
            raise

    def _release(self, user: str) -> None:
        waiters = self._waiting.get(user)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._waiting.pop(user, None)
        left = self._held[user] - 1
        if left:
            self._held[user] = left
        else:
            del self._held[user]
