"""What the sync and async clients share: channel set-up, when and how long to retry, and the
cursor that lets a watch resume where it stopped."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.client.errors import TaskServiceError

DEFAULT_SERVER = "127.0.0.1:50051"

# gRPC's own reconnect backoff grows to 120 s by default; after a server restart we want the channel
# to try again within a couple of seconds, and keepalive pings to notice a dead peer on a quiet watch.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


# UNAVAILABLE: the server could not be reached or is stopping. CANCELLED: this client never cancels
# a call it would retry (its own cancellation is asyncio.CancelledError or a deadline), so one that
# ends CANCELLED was cancelled by the server side: grpc core cancels the calls it received but had
# not handed to a handler yet when the server stops (grpc/grpc#41785), a handful per stop under load.
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with jitter. `attempts` bounds unary calls and bulk streams, which also
    stop when their deadline would pass; a watch retries for as long as it is iterated."""

    attempts: int = 5
    initial: float = 0.1
    maximum: float = 3.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based): a random point in the
        upper half of the window, so clients that failed together do not retry together."""
        window = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        return random.uniform(window / 2, window)

    def delay(self, error: TaskServiceError, attempt: int) -> float | None:
        """How long to wait before trying again after `error`, or None when it must not be retried."""
        if error.code in _RETRYABLE:
            return self.backoff(attempt)
        if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_after is not None:
            return max(error.retry_after, self.backoff(attempt))
        return None


NO_RETRY = Retry(attempts=1)


def credentials(
    tls: bool,
    ca_file: str | Path | None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials when asked for (a CA file or a client certificate implies TLS), else None for
    a plaintext channel. `cert_file` and `key_file` are the client's certificate for mTLS."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs both cert_file and key_file")
    if not (tls or ca_file or cert_file):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )


def is_replayable(requests: object) -> bool:
    """A bulk stream may be sent again when it is a list and every item carries a request_id."""
    return isinstance(requests, list | tuple) and all(request.request_id for request in requests)


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class WatchCursor:
    """Tracks the last sequence delivered so a reconnect asks for exactly the events after it.

    The first connection sends the caller's request as is. Later ones set `after_sequence` to the
    last delivered sequence (and drop `include_initial`), so nothing is missed or repeated. Before
    any event has arrived there is no sequence to resume from: the original request is sent again,
    which for `include_initial` means a fresh snapshot.
    """

    def __init__(self, request: pb.WatchTasksRequest) -> None:
        self._request = request
        self.sequence = request.after_sequence
        self._floor = request.after_sequence

    def next_request(self) -> pb.WatchTasksRequest:
        self._floor = self.sequence
        if not self.sequence:
            return self._request
        request = pb.WatchTasksRequest()
        request.CopyFrom(self._request)
        request.include_initial = False
        request.after_sequence = self.sequence
        return request

    def accept(self, event: pb.TaskEvent) -> bool:
        """Record the event; False when it was already delivered on an earlier connection."""
        if self._floor and event.sequence <= self._floor:
            return False
        self.sequence = max(self.sequence, event.sequence)
        return True
