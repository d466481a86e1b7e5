"""Per-user rate limiting: one token bucket per user, shared by every transport.

Every call and every message of a stream takes one token. A user's bucket refills at `rate` tokens
per second up to `burst`. A call that finds the bucket empty is refused with ResourceExhausted saying
when to retry (`take`); a message on an open stream waits for its token instead (`wait`), so a bulk
import or a command stream slows to the rate rather than breaking off half done. Each user has their
own bucket, so one user's burst never throttles another.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from taskservice.domain.errors import ResourceExhausted

_PRUNE_AT = 10_000  # buckets kept before full (= idle) ones are forgotten


class RateLimiter:
    """`rate` 0 turns limiting off."""

    def __init__(self, rate: float, burst: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(rate, 0.0)
        self.burst = float(burst) if burst > 0 else max(self.rate, 1.0)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)
        self._pruned_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, user_id: str) -> None:
        """Spend one of the user's tokens, or raise ResourceExhausted with the time until one is back."""
        if not self.enabled:
            return
        now = self._clock()
        tokens, at = self._buckets.get(user_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            retry_after = (1.0 - tokens) / self.rate
            raise ResourceExhausted(
                f"rate limit of {self.rate:g} requests per second exceeded; retry in {retry_after:.2f}s",
                retry_after=retry_after,
            )
        self._buckets[user_id] = (tokens - 1.0, now)
        if len(self._buckets) > _PRUNE_AT and now - self._pruned_at > 1.0:
            self._forget_idle(now)

    @property
    def tracking(self) -> bool:
        """Whether any key has spent tokens recently (idle ones are forgotten)."""
        return bool(self._buckets)

    def wait_time(self, key: str) -> float:
        """Seconds until `key` has a token again (0: it has one now); spends nothing."""
        if not self.enabled:
            return 0.0
        tokens, at = self._buckets.get(key, (self.burst, 0.0))
        if key in self._buckets:
            tokens = min(self.burst, tokens + (self._clock() - at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def spend(self, key: str) -> None:
        """Take one of `key`'s tokens if it has one (a failure to count, not a call to refuse)."""
        with contextlib.suppress(ResourceExhausted):
            self.take(key)

    async def wait(self, user_id: str) -> None:
        """Spend one of the user's tokens, waiting until one is available."""
        while True:
            try:
                self.take(user_id)
                return
            except ResourceExhausted as refused:
                await asyncio.sleep(refused.retry_after or 0.0)

    def _forget_idle(self, now: float) -> None:
        """A bucket that has refilled is the same as no bucket: drop those to bound memory."""
        self._pruned_at = now
        full = [
            u for u, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst
        ]
        for user_id in full:
            del self._buckets[user_id]
