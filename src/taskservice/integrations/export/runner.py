"""Running one export: hold its lease, resume after the broker's newest event, follow the log.

With replicas on PostgreSQL, every server runs the loop but only the holder of the export's lease
publishes; when it dies, another takes the lease and resumes from what the broker holds. A broker
that goes away is retried with backoff, resuming the same way, so a restart of either side loses
nothing and the lag (`taskservice_export_lag_events`) shrinks again once the broker is back.
"""

from __future__ import annotations

import asyncio

import structlog

from taskservice.domain.values import now_us
from taskservice.integrations.cursor import LogFollower
from taskservice.integrations.export.brokers import Broker
from taskservice.store.webhooks import Leases
from taskservice.telemetry import metrics

log = structlog.get_logger(__name__)

_BATCH = 500
_RETRY_FIRST = 0.5
_RETRY_MAX = 15.0
_LEASE_RETRY = 1.0


class Export:
    def __init__(self, broker: Broker, follower: LogFollower, leases: Leases) -> None:
        self.broker = broker
        self.target = broker.target
        self._follower = follower
        self._leases = leases
        self.cursor: int | None = None  # None: this server is not exporting

    def lag(self) -> int:
        return 0 if self.cursor is None else max(self._follower.head - self.cursor, 0)

    async def run(self) -> None:
        metrics.integrations.exporters.add(self)
        lease = f"export:{self.target}"
        delay = _RETRY_FIRST
        holding = False
        try:
            while True:
                await self._leases.check()
                if holding and not self._leases.valid():
                    holding, self.cursor = False, None
                if not holding:
                    holding = await self._leases.acquire(lease)
                    if not holding:
                        await asyncio.sleep(_LEASE_RETRY)
                        continue
                try:
                    await self._export()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("export.failed", target=self.target, error=repr(error)[:300], retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
                else:
                    delay = _RETRY_FIRST
        finally:
            metrics.integrations.exporters.discard(self)
            await self.broker.close()
            if holding:
                await self._leases.release(lease)

    async def _export(self) -> None:
        """Publish from the broker's newest event on, until the lease is lost (or an error)."""
        await self.broker.connect()
        cursor = await self.broker.last_sequence()
        log.info("export.resuming", target=self.target, after=cursor)
        published = metrics.export_events.labels(self.target)
        delay = metrics.export_delay.labels(self.target)
        while self._leases.valid():
            self.cursor = cursor
            events = await self._follower.next_batch(cursor, _BATCH)
            # Project membership changes share the log (for replicas and watches) but are no TaskEvents.
            tasks = [event for event in events if not event.is_project]
            if tasks:
                await self.broker.publish(tasks)
            now = now_us()
            for event in tasks:
                delay.observe(max(now - event.occurred_us, 0) / 1e6)
            published.inc(len(tasks))
            cursor = events[-1].sequence
