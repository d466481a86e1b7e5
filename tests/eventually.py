"""Waiting in tests for something to become true: poll it, with a deadline, instead of sleeping.

A fixed sleep is either too short on a busy machine (a flaky test) or too long on a quiet one (a
slow suite); polling returns as soon as the condition holds and fails with what it last saw.
Sleeps that pace load on purpose (let writes run for a second) are not waits for a condition and
stay sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _truthy(value: object) -> bool:
    return bool(value)


def eventually(
    probe: Callable[[], T],
    until: Callable[[T], object] = _truthy,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "",
) -> T:
    """Call `probe` until `until(value)` holds (by default: until the value is truthy) and return
    that value. When `timeout` seconds pass first, fail the test with `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or 'a condition'}: {value!r}"
            )
        time.sleep(interval)


async def eventually_async(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], object] = _truthy,
    *,
    within: float = 10.0,
    interval: float = 0.05,
    what: str = "",
) -> T:
    """`eventually` for a coroutine probe, sleeping on the event loop between calls; `within` is its
    timeout (named so as not to shadow asyncio's timeouts)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or 'a condition'}: {value!r}")
        await asyncio.sleep(interval)
