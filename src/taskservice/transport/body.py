"""Reading request bodies on the HTTP port within bounds, for every protocol served there
(gRPC-Web, Connect, REST).

A body is read only for an admitted caller (a request without a valid token is answered before a
byte of its body is read), within the caller's receive slots (access/receiving.py, shared with the
gRPC port), within a time limit, and within a byte budget shared by every request on the port: the
bodies being held at once never add up to more than the budget, whoever sends them. A body that
does not fit is refused at once with RESOURCE_EXHAUSTED rather than waiting for room.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.types import Receive

from taskservice.domain.errors import DeadlineExceeded, DomainError, ResourceExhausted

DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S = 30.0


class BodyCutShort(Exception):
    """The client left, or ended the body, before the request was whole."""


@dataclass
class BodyBudget:
    """Bytes of request bodies the port holds now, against its limit."""

    limit: int = DEFAULT_BUDGET_BYTES
    held: int = field(default=0)

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


class Body:
    """One request's body, read under the port's budget; `release()` gives its bytes back."""

    def __init__(self, budget: BodyBudget, max_bytes: int, timeout_s: float) -> None:
        self._budget = budget
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._held = 0

    async def read(self, receive: Receive, content_length: str | None = None) -> bytes | DomainError:
        """The whole body, or the error that answers the call instead. A disconnect before the
        body's end, or a body shorter than its content-length, raises `BodyCutShort`: a request cut
        off mid-body is never executed."""
        try:
            async with asyncio.timeout(self._timeout_s):
                body = await self._read(receive)
        except TimeoutError:
            return DeadlineExceeded(f"the request body did not arrive within {self._timeout_s:g} s")
        declared = int(content_length) if content_length and content_length.isdigit() else 0
        if isinstance(body, bytes) and len(body) < declared:
            raise BodyCutShort
        return body

    async def _read(self, receive: Receive) -> bytes | DomainError:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BodyCutShort
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_bytes:
                return ResourceExhausted(f"the request is larger than {self._max_bytes} bytes")
            if not self._budget.take(len(chunk)):
                return ResourceExhausted(
                    "the server is receiving too many request bodies at once; retry shortly"
                )
            self._held += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def content(self, receive: Receive, content_length: str | None = None) -> bytes:
        """The whole body; raises the DomainError that answers the call instead (or BodyCutShort)."""
        body = await self.read(receive, content_length)
        if isinstance(body, DomainError):
            raise body
        return body

    def release(self) -> None:
        self._budget.give(self._held)
        self._held = 0


@dataclass(frozen=True)
class BodyLimits:
    """The HTTP port's limits on request bodies: one budget shared by every protocol on the port,
    each body's size limit and its time limit."""

    budget: BodyBudget = field(default_factory=BodyBudget)
    max_bytes: int = 4 * 1024 * 1024
    timeout_s: float = DEFAULT_TIMEOUT_S

    @contextlib.asynccontextmanager
    async def body(self) -> AsyncIterator[Body]:
        """A body to read under these limits; its bytes go back to the budget when the call ends."""
        body = Body(self.budget, self.max_bytes, self.timeout_s)
        try:
            yield body
        finally:
            body.release()


async def until_disconnect(receive: Receive) -> None:
    """Return when the client disconnects (read only after the request body is whole)."""
    while (await receive())["type"] != "http.disconnect":
        pass
