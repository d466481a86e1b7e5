"""A real HTTP endpoint for webhook tests: records every POST and verifies its signature with the
`standardwebhooks` library (the reference implementation, not our own signing code)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Received:
    id: int  # webhook-id: the event's sequence
    event: dict[str, Any]
    verified_by: list[str]  # the secrets whose signature verified
    status: int  # what the receiver answered
    signatures: str


Answer = tuple[int, dict[str, str]]


class Receiver:
    """`respond(n)` decides the answer to the n-th request (counted from 0); default 200."""

    def __init__(self, respond: Callable[[int], Answer] | None = None, delay: float = 0.0) -> None:
        self.secrets: list[str] = []
        self.respond = respond or (lambda _: (200, {}))
        self.delay = delay
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver._handle(self, body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if self.delay:
            time.sleep(self.delay)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        verified = []
        for secret in list(self.secrets):
            try:
                Verifier(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified.append(secret)
        with self._lock:
            status, extra = self.respond(len(self.requests))
            self.requests.append(
                Received(
                    int(headers["webhook-id"]),
                    json.loads(body),
                    verified,
                    status,
                    headers["webhook-signature"],
                )
            )
        handler.send_response(status)
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.send_header("content-length", "0")
        handler.end_headers()

    @property
    def accepted(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_ids(self) -> list[int]:
        """Sequences accepted, each once (a redelivery after a crash is dropped, as a receiver
        deduplicating on `webhook-id` does), in the order first accepted."""
        return list(dict.fromkeys(r.id for r in self.accepted))

    def wait_for(self, count: int, timeout: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = self.accepted_ids()
            if len(ids) >= count:
                return ids
            time.sleep(0.05)
        raise AssertionError(f"received {len(self.accepted_ids())} of {count} events in {timeout}s")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
