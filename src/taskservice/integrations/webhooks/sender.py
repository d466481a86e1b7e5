"""One webhook POST: resolve and check the target, sign, send, and say what happened.

Redirects are never followed (a 3xx is a failed delivery: a redirect could lead past the SSRF
guard), the whole exchange has `TIMEOUT` seconds, no more than `MAX_BODY` bytes of an answer are
read, and the environment's proxy settings are ignored.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from taskservice.integrations.webhooks import signing
from taskservice.integrations.webhooks.retry import parse_retry_after
from taskservice.integrations.webhooks.ssrf import Refused, Target, UrlGuard

TIMEOUT = 10.0
MAX_BODY = 64 * 1024
USER_AGENT = "TaskService-Webhooks/1"
_MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt got: `status` 0 when no HTTP answer came (refused, unreachable, timeout)."""

    success: bool
    status: int
    error: str
    duration_ms: int
    retry_after: float | None = None


class Sender:
    def __init__(self, guard: UrlGuard, max_connections: int = 256) -> None:
        self._guard = guard
        self._client = httpx.AsyncClient(
            timeout=TIMEOUT,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, url: str, message_id: str, body: bytes, secrets: list[str]) -> Outcome:
        """POST `body` to `url`, signed with every secret in `secrets`."""
        started = time.perf_counter()
        try:
            target = await self._guard.check(url)
        except Refused as refused:
            return Outcome(False, 0, f"refused: the URL {refused}", _ms(started))
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signing.headers(secrets, message_id, timestamp, body),
        }
        request = self._request(target, headers, body)
        try:
            # The whole exchange has TIMEOUT: httpx's own timeouts bound each read, not their sum.
            response = await asyncio.wait_for(self._exchange(request), TIMEOUT)
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(False, 0, f"no answer within {TIMEOUT:.0f} s", _ms(started))
        except httpx.HTTPError as error:
            return Outcome(False, 0, f"{type(error).__name__}: {error}"[:_MAX_ERROR], _ms(started))
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(True, status, "", _ms(started))
        retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        reason = "redirects are not followed" if 300 <= status < 400 else response.reason_phrase
        return Outcome(
            False, status, f"HTTP {status} {reason}".strip()[:_MAX_ERROR], _ms(started), retry_after
        )

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        """Send, and read at most `MAX_BODY` bytes of the answer: a short body read to its end keeps
        the connection for the next delivery, and a long one cannot make the server hold it."""
        response = await self._client.send(request, stream=True)
        try:
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > MAX_BODY:
                    break
        finally:
            await response.aclose()
        return response

    def _request(self, target: Target, headers: dict[str, str], body: bytes) -> httpx.Request:
        """The request, sent to the checked address when there is one (Host header and TLS server
        name stay the URL's host, so virtual hosts and certificates work as usual)."""
        url = httpx.URL(target.url)
        extensions = {}
        if target.address is not None:
            headers["host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = target.host
            url = url.copy_with(host=str(target.address))
        return self._client.build_request("POST", url, headers=headers, content=body, extensions=extensions)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
