"""The access log: one line per call, cheap enough to leave on at INFO under full load.

A structlog line (processor chain, json.dumps, a write per line) costs as much as a whole trivial
RPC. In JSON format this module writes the same fields and shape (`event`, `level`,
`timestamp` as structlog renders them) with a hand-built line: the constant parts are encoded once
per method, strings go through the C JSON escaper, and lines are written in batches — every 50 ms
or every 512 lines — rather than one write per call (under load the event loop finishes only a call
or two per turn). A killed process can lose the last 50 ms of access lines. Console format (people
at a terminal) goes through structlog, line by line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from json.encoder import encode_basestring_ascii as _quote
from typing import TextIO

import structlog

_log = structlog.get_logger("taskservice.access")
_FLUSH_AFTER = 0.05
_FLUSH_LINES = 512


class AccessLog:
    def __init__(self) -> None:
        self.level = logging.INFO
        self._json = False
        self._stream: TextIO = sys.stderr
        self._pending: list[str] = []
        self._second = -1
        self._second_text = ""

    def configure(self, level: int, json_lines: bool, stream: TextIO) -> None:
        self.level, self._json, self._stream = level, json_lines, stream

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def write(
        self,
        level: int,
        method: str,
        code: str,
        seconds: float,
        user: str,
        peer: str,
        request_id: str,
        trace_id: str | None = None,
    ) -> None:
        """One access line (callers check `enabled(level)` first, to skip gathering the fields)."""
        duration_ms = round(seconds * 1000, 3)
        if not self._json:
            extra = {"trace_id": trace_id} if trace_id else {}
            _log.log(level, "rpc", method=method, code=code, duration_ms=duration_ms, user=user,
                     peer=peer, request_id=request_id, **extra)  # fmt: skip
            return
        line = (
            f'{{"method": {_quote(method)}, "code": "{code}", "duration_ms": {duration_ms}, '
            f'"user": {_quote(user)}, "peer": {_quote(peer)}, "request_id": {_quote(request_id)}, '
            + (f'"trace_id": "{trace_id}", ' if trace_id else "")
            + f'"event": "rpc", "level": "{logging.getLevelName(level).lower()}", '
            f'"timestamp": "{self._timestamp()}"}}\n'
        )
        pending = self._pending
        pending.append(line)
        if len(pending) == 1:
            try:
                asyncio.get_running_loop().call_later(_FLUSH_AFTER, self.flush)
            except RuntimeError:  # no event loop: write now
                self.flush()
        elif len(pending) >= _FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        if lines:
            self._stream.write("".join(lines))
            self._stream.flush()

    def _timestamp(self) -> str:
        """ISO 8601 in UTC with microseconds, as structlog's TimeStamper(fmt="iso", utc=True)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1_000_000):06d}Z"


access_log = AccessLog()
