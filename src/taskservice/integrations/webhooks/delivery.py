"""Delivering webhooks: one worker per webhook, following the event log from the webhook's cursor.

A worker sends the events its webhook's owner may see and its filters match, one at a time and in
sequence order; a failed event is retried (backoff with jitter, or `Retry-After`) before any later
one goes, for the retry window, after which the webhook is disabled with `last_error`, as it is at
once on 410 Gone. Each webhook has its own worker, so a slow or failing endpoint delays only itself.
The cursor and the attempts are written in small batches: a crash re-sends at most the events of
the last fraction of a second (delivery is at least once; receivers deduplicate on `webhook-id`).

With replicas, the dispatcher of each server takes a lease per webhook before starting its worker,
so exactly one replica delivers a webhook; a replica that dies loses its leases and another one
picks its webhooks up from their stored cursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.values import now_us, timestamp_from_us
from taskservice.integrations.cursor import LogFollower
from taskservice.integrations.payload import event_json
from taskservice.integrations.webhooks.retry import RetryPolicy
from taskservice.integrations.webhooks.sender import Outcome, Sender
from taskservice.store.base import StoredEvent
from taskservice.store.webhooks import Progress, WebhookRecord, WebhookStore
from taskservice.telemetry import metrics

log = structlog.get_logger(__name__)

EventView = Callable[
    [Caller, pb.WatchTasksRequest, int], Awaitable[Callable[[StoredEvent], "pb.TaskEvent | bytes | None"]]
]
"""What a user receives for each event under some filters (`TaskService.event_view`): watches and
webhooks share one rule for who may see what."""

_BATCH = 500
_FLUSH_EVERY = 0.2  # seconds between cursor writes while delivering
_FLUSH_DELIVERIES = 200  # ...or after this many attempts
_KEEP_DELIVERIES = 1000  # attempts kept per webhook for ListWebhookDeliveries
_PRUNE_EVERY = 60.0
_RECONCILE_EVERY = 1.0


@dataclass(frozen=True)
class Delivery:
    """What every worker of one server shares."""

    hooks: WebhookStore
    follower: LogFollower
    sender: Sender
    view: EventView
    policy: RetryPolicy


class WebhookWorker:
    """Delivers one webhook until it is cancelled, disabled, or its lease is lost."""

    def __init__(self, record: WebhookRecord, delivery: Delivery) -> None:
        self.record = record
        self.cursor = record.webhook.delivered_sequence
        self._d = delivery
        self._hook = record.webhook
        self._view: Callable[[StoredEvent], pb.TaskEvent | bytes | None] | None = None
        self._progress = Progress(self.cursor, record.failing_since_us)
        self._flushed_at = time.monotonic()
        self._pruned_at = 0.0

    async def _event_view(
        self, record: WebhookRecord
    ) -> Callable[[StoredEvent], pb.TaskEvent | bytes | None]:
        w = record.webhook
        owner = Caller(w.created_by, is_admin=record.creator_admin)
        request = pb.WatchTasksRequest(statuses=w.statuses, labels=w.labels)
        view = await self._d.view(owner, request, self.cursor)
        projects = frozenset(w.project_ids)
        if not projects:
            return view

        def in_projects(event: StoredEvent) -> pb.TaskEvent | bytes | None:
            before = event.previous
            if event.task.project_id in projects or (before is not None and before.project_id in projects):
                return view(event)
            return None

        return in_projects

    async def run(self, lease_valid: Callable[[], bool]) -> None:
        self._view = view = await self._event_view(self.record)
        try:
            while lease_valid():
                try:
                    events = await asyncio.wait_for(
                        self._d.follower.next_batch(self.cursor, _BATCH), _FLUSH_EVERY
                    )
                except TimeoutError:  # caught up: store the cursor now rather than at the next event
                    await self._flush(force=True)
                    continue
                for event in events:
                    seen = view(event)
                    if seen is not None:
                        if not lease_valid():
                            return
                        if not await self._deliver(event.sequence, event_json(seen)):
                            return  # disabled
                    self.cursor = self._progress.delivered_sequence = event.sequence
                await self._flush()
        finally:
            with contextlib.suppress(Exception):
                await self._flush(force=True)

    async def _deliver(self, sequence: int, body: bytes) -> bool:
        """Send one event until it succeeds (True) or the webhook is disabled (False)."""
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._d.sender.send(self._hook.url, str(sequence), body, self._secrets())
            self._log(sequence, attempt, outcome)
            if outcome.success:
                if self._progress.failing_since_us:
                    self._progress.failing_since_us = 0
                    self._progress.last_error = ""
                metrics.webhook_deliveries.labels("success").inc()
                await self._flush()
                return True
            now = now_us()
            if outcome.status == 410:
                metrics.webhook_deliveries.labels("gone").inc()
                await self._disable(f"disabled: the endpoint answered 410 Gone for event {sequence}")
                return False
            if not self._progress.failing_since_us:
                self._progress.failing_since_us = now
            failing_for = (now - self._progress.failing_since_us) / 1e6
            window = self._d.policy.window
            if failing_for >= window:
                metrics.webhook_deliveries.labels("expired").inc()
                await self._disable(
                    f"disabled: event {sequence} failed for {window:.0f} s ({attempt} attempts); "
                    f"last: {outcome.error}"
                )
                return False
            metrics.webhook_deliveries.labels(
                "refused" if outcome.error.startswith("refused") else "failure"
            ).inc()
            self._progress.last_error = f"event {sequence}, attempt {attempt}: {outcome.error}"
            await self._flush(force=True)
            delay = self._d.policy.delay(attempt, outcome.retry_after)
            await asyncio.sleep(min(delay, max(window - failing_for, 0.0)))

    def _secrets(self) -> list[str]:
        r = self.record
        if r.previous_secret and r.previous_until_us > now_us():
            return [r.secret, r.previous_secret]
        return [r.secret]

    def _log(self, sequence: int, attempt: int, outcome: Outcome) -> None:
        self._progress.deliveries.append(
            pb.WebhookDelivery(
                webhook_id=self._hook.id,
                sequence=sequence,
                attempt=attempt,
                http_status=outcome.status,
                error=outcome.error,
                attempted_at=timestamp_from_us(now_us() - outcome.duration_ms * 1000),
                duration_ms=outcome.duration_ms,
                success=outcome.success,
            )
        )

    async def _disable(self, reason: str) -> None:
        log.warning("webhook.disabled", webhook=self._hook.id, reason=reason)
        self._progress.last_error = reason
        self._progress.disable = True
        await self._flush(force=True)

    async def _flush(self, *, force: bool = False) -> None:
        """Write the cursor and the attempts made since the last write: when forced, and otherwise
        at most every `_FLUSH_EVERY` seconds or `_FLUSH_DELIVERIES` attempts."""
        p = self._progress
        now = time.monotonic()
        due = now - self._flushed_at >= _FLUSH_EVERY or len(p.deliveries) >= _FLUSH_DELIVERIES
        if not (force or due):
            return
        if (
            p.delivered_sequence == self._hook.delivered_sequence
            and not p.deliveries
            and p.last_error is None
        ):
            return
        await self._d.hooks.record(self._hook.id, p)
        self._hook.delivered_sequence = p.delivered_sequence
        self._progress = Progress(p.delivered_sequence, p.failing_since_us)
        self._flushed_at = now
        if now - self._pruned_at >= _PRUNE_EVERY:
            self._pruned_at = now
            await self._d.hooks.prune_deliveries(self._hook.id, _KEEP_DELIVERIES)


class WebhookDispatcher:
    """Runs a worker for every active webhook whose lease this server holds, and keeps that set
    current as webhooks are created, changed, disabled and deleted (here or on another replica)."""

    def __init__(self, delivery: Delivery, reconcile_every: float = _RECONCILE_EVERY) -> None:
        self._d = delivery
        self._every = reconcile_every
        self._workers: dict[str, tuple[WebhookWorker, asyncio.Task[None]]] = {}
        self._poked = asyncio.Event()

    @property
    def delivering(self) -> int:
        return len(self._workers)

    def lag(self) -> int:
        head = self._d.follower.head
        return max((max(head - worker.cursor, 0) for worker, _ in self._workers.values()), default=0)

    def poke(self) -> None:
        """Reconcile now (a webhook was created, changed or deleted on this server)."""
        self._poked.set()

    async def run(self) -> None:
        metrics.integrations.dispatchers.add(self)
        try:
            while True:
                self._poked.clear()
                try:
                    await self._reconcile()
                except Exception:
                    log.exception("webhooks.reconcile_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poked.wait(), self._every)
        finally:
            metrics.integrations.dispatchers.discard(self)
            for webhook_id in list(self._workers):
                await self._stop(webhook_id)

    async def _reconcile(self) -> None:
        leases = self._d.hooks.leases()
        await leases.check()
        if not leases.valid():
            for webhook_id in list(self._workers):
                await self._stop(webhook_id)
        wanted = {record.webhook.id: record for record in await self._d.hooks.active()}
        for webhook_id, (worker, task) in list(self._workers.items()):
            record = wanted.get(webhook_id)
            if task.done() or record is None or record.revision != worker.record.revision:
                await self._stop(webhook_id)
        for webhook_id in wanted:
            if webhook_id not in self._workers and await leases.acquire(_lease(webhook_id)):
                fresh = await self._d.hooks.get(webhook_id)  # the cursor as the last holder left it
                if fresh is None or not fresh.webhook.active:
                    await leases.release(_lease(webhook_id))
                    continue
                worker = WebhookWorker(fresh, self._d)
                task = asyncio.create_task(worker.run(leases.valid), name=f"webhook-{webhook_id}")
                self._workers[webhook_id] = (worker, task)

    async def _stop(self, webhook_id: str) -> None:
        _, task = self._workers.pop(webhook_id)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("webhook.worker_failed", webhook=webhook_id, error=repr(task.exception()))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await self._d.hooks.leases().release(_lease(webhook_id))


def _lease(webhook_id: str) -> str:
    return f"webhook:{webhook_id}"
