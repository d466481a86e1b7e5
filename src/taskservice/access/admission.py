"""What every transport checks before it lets a call through: who is calling (authentication), that
they are within their rate (each call and each stream message counts: a call over the rate is
refused, a stream message over it waits), how many streams they hold open, and how many
request messages they may be receiving at once (`receiving.py`). A client address
whose authentications keep failing is slowed down: past `failed_auth` (a token bucket per address),
a token this server has not already verified is refused with RESOURCE_EXHAUSTED and RetryInfo,
before any signature is checked; tokens it verified earlier still pass, so a user behind the same
address as a guesser keeps working. The gRPC handlers and
`AdmissionGuard` (transport/grpc_admission.py) call it; the gRPC-Web adapter calls the very same
object."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from taskservice.access.auth import Authenticator
from taskservice.access.caller import Caller
from taskservice.access.ratelimit import RateLimiter
from taskservice.access.receiving import ReceiveSlots
from taskservice.domain.errors import ResourceExhausted, Unauthenticated
from taskservice.telemetry import metrics
from taskservice.telemetry.observability import note_user


@dataclass(frozen=True, slots=True)
class StreamQuota:
    """How many streams a caller may hold open at once: `per_user` for a person, `per_service` for a
    token with the `service` role (a backend following watches for many people); admins have none.
    Over it, a new stream is refused at once with RESOURCE_EXHAUSTED: it never waits for a slot."""

    per_user: int
    per_service: int

    def limit(self, caller: Caller) -> int | None:
        if caller.is_admin:
            return None
        return self.per_service if caller.is_service else self.per_user


class Admission:
    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RateLimiter,
        streams: StreamQuota,
        failed_auth: RateLimiter | None = None,
        receiving: ReceiveSlots | None = None,
    ) -> None:
        self._auth = authenticator
        self._limiter = limiter
        self._failed_auth = failed_auth or RateLimiter(0)
        self._streams = streams
        self._open_streams: dict[str, int] = {}
        self.receiving = receiving or ReceiveSlots(0)

    def admit(self, metadata: Mapping[str, str], peer: Callable[[], str] = str) -> Caller:
        """The caller of a new call, which spends one of their rate tokens (Unauthenticated /
        ResourceExhausted otherwise). `peer` gives the transport's peer address; it is asked only
        once some address has failed to authenticate (a lookup costs the hot path otherwise)."""
        address = peer_address(peer()) if self._failed_auth.tracking else ""
        wait = self._failed_auth.wait_time(address) if address else 0.0
        if wait > 0:
            known = self._auth.known(metadata)
            if known is None:
                metrics.rate_limited.labels("auth_failures").inc()
                raise ResourceExhausted(
                    f"too many failed authentications from {address}; retry in {wait:.2f}s", retry_after=wait
                )
            caller = known
        else:
            try:
                caller = self._auth.authenticate(metadata)
            except Unauthenticated as error:
                metrics.auth_failed(error.reason)
                if self._failed_auth.enabled:
                    self._failed_auth.spend(address or peer_address(peer()))
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
        limit = self._streams.limit(caller)
        if limit is not None and held >= limit:
            metrics.rate_limited.labels("streams").inc()
            raise ResourceExhausted(
                f"at most {limit} streams may be open per user; close one before opening another"
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


def peer_address(peer: str) -> str:
    """The client's address without its port: `ipv4:10.0.0.7:5123` (gRPC) or `10.0.0.7:5123`
    (HTTP) → `10.0.0.7`; `ipv6:[::1]:5123` → `::1`; a Unix socket keeps its path."""
    kind, _, rest = peer.partition(":") if peer.startswith(("ipv4:", "ipv6:", "unix:")) else ("", "", peer)
    if kind == "unix":
        return peer
    host, _, port = rest.rpartition(":")
    address = host if port.isdigit() else rest
    return address.strip("[]")
