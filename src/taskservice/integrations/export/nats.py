"""Export to NATS JetStream: one message per event on SUBJECT, `Nats-Msg-Id` = its sequence.

The message id lets JetStream drop a re-sent event (within the stream's duplicate window). A batch
is published without waiting between messages, then every acknowledgement is awaited: waiting for
each before the next capped export at one event per turn of a busy event loop. The connection
never reconnects by itself (the export loop does, and resumes after the newest message the stream
holds), so what JetStream stored of a batch is always a prefix of it, and resuming leaves no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from taskservice.integrations.payload import event_json, event_type_name
from taskservice.store.base import StoredEvent

_TIMEOUT = 5.0
MSG_ID = "Nats-Msg-Id"
EVENT_TYPE = "TaskService-Event-Type"


class NatsBroker:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.target = url
        self._server = f"nats://{parts.hostname}:{parts.port or 4222}"
        self.subject = parts.path.strip("/")
        self.stream = ""
        self._nc: Any = None
        self._js: Any = None

    async def connect(self) -> None:
        await self.close()
        self._nc = await nats.connect(
            servers=[self._server],
            connect_timeout=_TIMEOUT,
            allow_reconnect=False,  # the export loop reconnects and resumes from the stream itself
            max_reconnect_attempts=0,
        )
        self._js = self._nc.jetstream(timeout=_TIMEOUT)
        try:
            self.stream = await self._js.find_stream_name_by_subject(self.subject)
        except NotFoundError:
            self.stream = "TASKSERVICE_" + re.sub(r"[^A-Za-z0-9_-]", "_", self.subject).upper()
            await self._js.add_stream(StreamConfig(name=self.stream, subjects=[self.subject]))

    async def last_sequence(self) -> int:
        try:
            message = await self._js.get_last_msg(self.stream, self.subject)
        except NotFoundError:
            return 0
        return int((message.headers or {}).get(MSG_ID, 0))

    async def publish(self, events: list[StoredEvent]) -> None:
        acks = [
            await self._js.publish_async(
                self.subject,
                event_json(event.message()),
                headers={MSG_ID: str(event.sequence), EVENT_TYPE: event_type_name(event.event_type)},
            )
            for event in events
        ]
        results = await asyncio.wait_for(asyncio.gather(*acks, return_exceptions=True), _TIMEOUT)
        for event, result in zip(events, results, strict=True):
            if isinstance(result, BaseException):
                raise RuntimeError(f"JetStream did not store event {event.sequence}: {result!r}")

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):  # already broken: nothing to flush
                await nc.close()
