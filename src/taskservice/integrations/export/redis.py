"""Export to a Redis stream: one entry per event, with the explicit id `<sequence>-0`.

Redis refuses an id not above the stream's newest, so a re-sent event is never stored twice, and the
newest entry's id is where export resumes. Each entry holds `sequence`, `event_type` (its name) and
`event` (the TaskEvent's canonical JSON). A batch goes in one pipeline, executed in order.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from taskservice.integrations.payload import event_json, event_type_name
from taskservice.store.base import StoredEvent

_TIMEOUT = 5.0


class RedisBroker:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.target = url
        self.stream = parts.path.strip("/")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._password = parts.password
        self._redis: aioredis.Redis | None = None

    async def connect(self) -> None:
        await self.close()
        self._redis = aioredis.Redis(
            host=self._host,
            port=self._port,
            password=self._password,
            socket_timeout=_TIMEOUT,
            socket_connect_timeout=_TIMEOUT,
        )
        await self._redis.ping()

    async def last_sequence(self) -> int:
        assert self._redis is not None
        newest = await self._redis.xrevrange(self.stream, count=1)
        if not newest:
            return 0
        entry_id = newest[0][0]
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return int(text.split("-", 1)[0])

    async def publish(self, events: list[StoredEvent]) -> None:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            pipe.xadd(
                self.stream,
                {
                    "sequence": str(event.sequence),
                    "event_type": event_type_name(event.event_type),
                    "event": event_json(event.message()),
                },
                id=f"{event.sequence}-0",
            )
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "equal or smaller" in str(result):
                continue  # already exported (a re-send after a reconnect)
            if isinstance(result, Exception):
                raise result

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            with contextlib.suppress(Exception):  # already broken
                await client.aclose()
