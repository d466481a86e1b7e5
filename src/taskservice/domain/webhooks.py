"""The webhook use cases: create, read, change and delete webhooks, and list their deliveries.

A webhook belongs to the user who created it: anyone else gets NOT_FOUND, as for tasks, and admins
see every webhook. Its secret is shown when it is created and when it is rotated (UpdateWebhook with
the update_mask path `secret`), never again; after a rotation the previous secret still signs for a
grace period, so receivers can switch over without losing a delivery.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import InvalidArgument, NotFound, ResourceExhausted
from taskservice.domain.validation import STATUSES, Checker, Limits
from taskservice.domain.values import new_task_id, now_us, timestamp_from_us
from taskservice.integrations.webhooks.signing import new_secret
from taskservice.integrations.webhooks.ssrf import Refused, UrlGuard
from taskservice.store.base import TaskStore
from taskservice.store.webhooks import WebhookRecord, WebhookStore

UPDATE_PATHS = ("url", "active", "secret")
DESCRIPTION_MAX = 1000
WEBHOOKS_PER_USER = 100


class WebhookService:
    def __init__(
        self,
        hooks: WebhookStore,
        tasks: TaskStore,
        guard: UrlGuard,
        *,
        limits: Limits | None = None,
        secret_grace: float = 24 * 3600.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._hooks = hooks
        self._tasks = tasks
        self._guard = guard
        self._limits = limits or Limits()
        self._grace_us = int(secret_grace * 1_000_000)
        self._on_change = on_change

    async def create(self, caller: Caller, request: pb.CreateWebhookRequest) -> pb.Webhook:
        """A new active webhook that receives the events committed from now on; its secret is in the
        answer and nowhere else."""
        check = Checker(self._limits)
        self._check_filters(check, request)
        check.text("description", request.description, max_len=DESCRIPTION_MAX)
        await self._check_url(check, request.url)
        check.raise_if_any()
        if not caller.is_admin and len(await self._hooks.page(caller.user_id, "", WEBHOOKS_PER_USER)) >= (
            WEBHOOKS_PER_USER
        ):
            raise ResourceExhausted(f"a user may own at most {WEBHOOKS_PER_USER} webhooks; delete one first")
        webhook = pb.Webhook(
            id=new_task_id(),
            url=request.url,
            statuses=list(dict.fromkeys(request.statuses)),
            labels=list(dict.fromkeys(request.labels)),
            project_ids=list(dict.fromkeys(request.project_ids)),
            description=request.description,
            active=True,
            created_by=caller.user_id,
            created_at=timestamp_from_us(now_us()),
            delivered_sequence=(await self._tasks.event_bounds()).head,
        )
        record = WebhookRecord(webhook, caller.is_admin, new_secret())
        await self._hooks.insert(record)
        self._on_change()
        return _shown(record, with_secret=True)

    async def get(self, caller: Caller, request: pb.GetWebhookRequest) -> pb.Webhook:
        return _shown(await self._owned(caller, request.id))

    async def list(self, caller: Caller, request: pb.ListWebhooksRequest) -> pb.ListWebhooksResponse:
        limit = self._page_size(request.page_size)
        after = _decode_token(request.page_token)
        records = await self._hooks.page(None if caller.is_admin else caller.user_id, after, limit + 1)
        response = pb.ListWebhooksResponse(webhooks=[_shown(r) for r in records[:limit]])
        if len(records) > limit:
            response.next_page_token = _encode_token(records[limit - 1].webhook.id)
        return response

    async def update(self, caller: Caller, request: pb.UpdateWebhookRequest) -> pb.Webhook:
        """Change the URL or the active flag, or rotate the secret (mask path `secret`: the answer
        carries the new secret). Reactivating a disabled webhook resumes from its cursor."""
        paths = self._update_paths(request)
        check = Checker(self._limits)
        if "url" in paths:
            await self._check_url(check, request.url)
        check.raise_if_any()
        await self._owned(caller, request.id)
        rotated = "secret" in paths

        def change(record: WebhookRecord) -> WebhookRecord | None:
            if "url" in paths:
                record.webhook.url = request.url
            if "active" in paths and request.active != record.webhook.active:
                record.webhook.active = request.active
                record.failing_since_us = 0
            if rotated:
                record.previous_secret = record.secret
                record.previous_until_us = now_us() + self._grace_us
                record.secret = new_secret()
            record.revision += 1
            return record

        updated = await self._hooks.update(request.id, change)
        if updated is None:
            raise _not_found(request.id)
        self._on_change()
        return _shown(updated, with_secret=rotated)

    async def delete(self, caller: Caller, request: pb.DeleteWebhookRequest) -> None:
        await self._owned(caller, request.id)
        if not await self._hooks.delete(request.id):
            raise _not_found(request.id)
        self._on_change()

    async def deliveries(
        self, caller: Caller, request: pb.ListWebhookDeliveriesRequest
    ) -> pb.ListWebhookDeliveriesResponse:
        """The webhook's recent delivery attempts, newest first."""
        await self._owned(caller, request.webhook_id, field="webhook_id")
        limit = self._page_size(request.page_size)
        before = 0
        if request.page_token:
            token = _decode_token(request.page_token)
            if not token.isdigit():
                raise InvalidArgument.field("page_token", "is not a token this server issued")
            before = int(token)
        found = await self._hooks.deliveries(request.webhook_id, before, limit + 1)
        response = pb.ListWebhookDeliveriesResponse(deliveries=found[:limit])
        if len(found) > limit:
            response.next_page_token = _encode_token(found[limit - 1].id)
        return response

    # -- rules ----------------------------------------------------------------------------------

    async def _owned(self, caller: Caller, webhook_id: str, field: str = "id") -> WebhookRecord:
        check = Checker(self._limits)
        check.task_id(field, webhook_id)
        check.raise_if_any()
        record = await self._hooks.get(webhook_id)
        if record is None or not (caller.is_admin or record.webhook.created_by == caller.user_id):
            raise _not_found(webhook_id)
        return record

    async def _check_url(self, check: Checker, url: str) -> None:
        try:
            await self._guard.check(url)
        except Refused as refused:
            check.fail("url", str(refused))

    def _check_filters(self, check: Checker, request: pb.CreateWebhookRequest) -> None:
        most = self._limits.filter_values_max
        for name, values in (
            ("statuses", request.statuses),
            ("labels", request.labels),
            ("project_ids", request.project_ids),
        ):
            if len(values) > most:
                check.fail(name, f"at most {most} values")
        for i, status in enumerate(request.statuses):
            check.enum(f"statuses[{i}]", status, STATUSES, "TaskStatus")
        for i, label in enumerate(request.labels):
            check.text(f"labels[{i}]", label, max_len=self._limits.label_max, min_len=1)
        for i, project_id in enumerate(request.project_ids):
            check.task_id(f"project_ids[{i}]", project_id)

    def _update_paths(self, request: pb.UpdateWebhookRequest) -> set[str]:
        if request.HasField("update_mask"):
            paths = set(request.update_mask.paths)
            unknown = sorted(paths.difference(UPDATE_PATHS))
            if unknown:
                raise InvalidArgument.field(
                    "update_mask", f"unknown path {unknown[0]!r}; allowed: {', '.join(UPDATE_PATHS)}"
                )
        else:
            paths = {name for name in ("url", "active") if request.HasField(name)}
        if not paths:
            raise InvalidArgument.field(
                "update_mask", "nothing to change: set url or active, or mask `secret`"
            )
        return paths

    def _page_size(self, size: int) -> int:
        if size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        return min(size or self._limits.page_size_default, self._limits.page_size_max)


def _shown(record: WebhookRecord, *, with_secret: bool = False) -> pb.Webhook:
    webhook = pb.Webhook()
    webhook.CopyFrom(record.webhook)
    if with_secret:
        webhook.secret = record.secret
    return webhook


def _not_found(webhook_id: str) -> NotFound:
    return NotFound(f"webhook {webhook_id!r} not found")


def _encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        value = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument.field("page_token", "is not a token this server issued") from None
    if len(value) > 128:
        raise InvalidArgument.field("page_token", "is not a token this server issued")
    return value
