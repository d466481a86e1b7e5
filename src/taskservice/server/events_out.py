"""Wiring of the events that leave the server: the webhook service and its delivery, and exports."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from taskservice.domain.service import TaskService
from taskservice.domain.validation import Limits
from taskservice.domain.webhooks import WebhookService
from taskservice.integrations.cursor import LogFollower
from taskservice.integrations.export.brokers import check_export_url, open_broker
from taskservice.integrations.export.runner import Export
from taskservice.integrations.webhooks.delivery import Delivery, WebhookDispatcher
from taskservice.integrations.webhooks.retry import RetryPolicy
from taskservice.integrations.webhooks.sender import Sender
from taskservice.integrations.webhooks.ssrf import UrlGuard
from taskservice.server.config import Settings, SettingsError
from taskservice.store.base import TaskStore
from taskservice.store.webhooks import WebhookStore, open_webhook_store


@dataclass
class EventsOut:
    webhooks: WebhookService
    hooks: WebhookStore
    sender: Sender
    dispatcher: WebhookDispatcher
    exports: list[Export]
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="webhook-dispatcher"))
        for export in self.exports:
            self._tasks.append(asyncio.create_task(export.run(), name=f"export {export.target}"))

    async def stop(self) -> None:
        """Stop delivering (workers store their cursors) and exporting, then close the clients."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sender.close()
        await self.hooks.close()


def check_settings(settings: Settings) -> None:
    for url in settings.export:
        try:
            check_export_url(url)
        except ValueError as error:
            raise SettingsError(str(error)) from None
    if settings.webhook_retry_window <= 0:
        raise SettingsError("--webhook-retry-window must be positive")


async def open_events_out(
    settings: Settings, store: TaskStore, service: TaskService, limits: Limits
) -> EventsOut:
    """Open the webhook store and build everything; `EventsOut.start` sets delivery and export going."""
    check_settings(settings)
    hooks = open_webhook_store(store)
    await hooks.open()
    follower = LogFollower(store)
    await follower.start()
    guard = UrlGuard(settings.webhook_allow_private)
    sender = Sender(guard)
    policy = RetryPolicy(window=settings.webhook_retry_window)
    dispatcher = WebhookDispatcher(Delivery(hooks, follower, sender, service.event_view, policy))
    webhooks = WebhookService(
        hooks,
        store,
        guard,
        limits=limits,
        secret_grace=settings.webhook_secret_grace,
        on_change=dispatcher.poke,
    )
    exports = [Export(open_broker(url), follower, hooks.leases()) for url in settings.export]
    return EventsOut(webhooks, hooks, sender, dispatcher, exports)
