"""When to try a failed delivery again: exponential backoff with jitter, or what `Retry-After` asks."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts `first_delay`, 2x, 4x … apart (each between half and all of that, at random, so
    webhooks that failed together do not retry together), at most `max_delay` apart, for `window`
    seconds after the first failure of an event; then the webhook is disabled."""

    window: float = 24 * 3600.0
    first_delay: float = 1.0
    max_delay: float = 3600.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (counted from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.first_delay * 2.0 ** min(attempt - 1, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now, 0.0)
