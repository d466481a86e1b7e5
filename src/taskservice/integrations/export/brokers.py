"""The brokers events are exported to, behind one small interface, and the URL that picks one."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from taskservice.store.base import StoredEvent


class Broker(Protocol):
    """A destination that holds events in order and can say which one it holds last."""

    target: str  # the export URL, for logs and the metrics' `target` label

    async def connect(self) -> None:
        """Connect (again), creating the destination stream when there is none."""

    async def last_sequence(self) -> int:
        """The sequence of the newest event the broker holds (0: none)."""

    async def publish(self, events: list[StoredEvent]) -> None:
        """Store `events` in order; an event the broker already holds is not stored twice.
        Raises when the broker did not take them all (some may have been stored)."""

    async def close(self) -> None: ...


def check_export_url(url: str) -> None:
    """Raise ValueError, saying what is wrong, unless `url` is nats://HOST:PORT/SUBJECT or
    redis://HOST:PORT/STREAM."""
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "redis"):
        raise ValueError(f"--export {url!r}: use nats://HOST:PORT/SUBJECT or redis://HOST:PORT/STREAM")
    if not parts.hostname:
        raise ValueError(f"--export {url!r}: name the broker's host")
    try:
        parts.port  # noqa: B018 - parsing it validates it
    except ValueError:
        raise ValueError(f"--export {url!r}: the port is not a number") from None
    name = parts.path.strip("/")
    if not name or "/" in name or " " in name:
        what = "subject" if parts.scheme == "nats" else "stream key"
        raise ValueError(
            f"--export {url!r}: the path must be one {what}, e.g. {parts.scheme}://host/taskservice"
        )


def open_broker(url: str) -> Broker:
    check_export_url(url)
    if url.startswith("nats:"):
        from taskservice.integrations.export.nats import NatsBroker

        return NatsBroker(url)
    from taskservice.integrations.export.redis import RedisBroker

    return RedisBroker(url)
