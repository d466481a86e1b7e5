"""Export to NATS JetStream: one message per event on SUBJECT, `Nats-Msg-Id` = its sequence.

The message id lets JetStream drop a re-sent event (within the stream's duplicate window), and
events are published one at a time, each acknowledged before the next goes: a message lost in a
broken connection can then only be the newest, so resuming after the newest message the stream
holds never leaves a gap.
"""

from __future__ import annotations

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
        for event in events:
            await self._js.publish(
                self.subject,
                event_json(event.message()),
                headers={MSG_ID: str(event.sequence), EVENT_TYPE: event_type_name(event.event_type)},
            )

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):  # already broken: nothing to flush
                await nc.close()
