"""What every transport checks before it lets a call through: who is calling (authentication), that
they are within their rate (each call and each stream message counts: a call over the rate is
refused, a stream message over it waits), and how many streams they hold open. The gRPC handlers and
`AdmissionGuard` (transport/grpc_admission.py) call it; the gRPC-Web adapter calls the very same
object."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from taskservice.access.auth import Authenticator
from taskservice.access.caller import Caller
from taskservice.access.ratelimit import RateLimiter
from taskservice.domain.errors import ResourceExhausted, Unauthenticated
from taskservice.telemetry import metrics
from taskservice.telemetry.observability import note_user


class Admission:
    def __init__(self, authenticator: Authenticator, limiter: RateLimiter, max_streams_per_user: int) -> None:
        self._auth = authenticator
        self._limiter = limiter
        self._max_streams = max_streams_per_user
        self._open_streams: dict[str, int] = {}

    def admit(self, metadata: Mapping[str, str]) -> Caller:
        """The caller of a new call, which spends one of their rate tokens (Unauthenticated /
        ResourceExhausted otherwise)."""
        try:
            caller = self._auth.authenticate(metadata)
        except Unauthenticated as error:
            metrics.auth_failed(error.reason)
            raise
        note_user(caller.user_id)
        try:
            self._limiter.take(caller.user_id)
        except ResourceExhausted:
            metrics.rate_limited.labels("calls").inc()
            raise
        return caller

    @property
    def paces_messages(self) -> bool:
        """Whether stream messages count against the caller's rate (not when rate limiting is off)."""
        return self._limiter.enabled

    async def message(self, caller: Caller) -> None:
        """A further message on a stream: it counts against the caller's rate like a call, and waits
        for its token rather than ending a stream that is half done."""
        await self._limiter.wait(caller.user_id)

    def open_stream(self, caller: Caller) -> Callable[[], None]:
        """Take one of the caller's stream slots; call the returned function when the stream ends."""
        held = self._open_streams.get(caller.user_id, 0)
        if held >= self._max_streams:
            metrics.rate_limited.labels("streams").inc()
            raise ResourceExhausted(
                f"at most {self._max_streams} streams may be open per user; close one before opening another"
            )
        self._open_streams[caller.user_id] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._open_streams[caller.user_id] - 1
            if left:
                self._open_streams[caller.user_id] = left
            else:
                del self._open_streams[caller.user_id]

        return release
