"""The SSRF guard: without --webhook-allow-private, a webhook cannot reach loopback, link-local or
private addresses, whether named by address or by a host name that resolves to one."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.integrations.webhooks.sender import Sender
from taskservice.integrations.webhooks.ssrf import Refused, UrlGuard
from tests.servers import ServerProcess, bearer

REFUSED = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[fe80::1]/hook",
    "http://[fc00::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://224.0.0.1/hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_urls_are_refused_at_creation(jwt_server: ServerProcess, url: str) -> None:
    stub = rpc.WebhookServiceStub(jwt_server.channel())
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateWebhook(pb.CreateWebhookRequest(url=url), metadata=bearer(jwt_server.token("mallory")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "url" in (caught.value.details() or "")


def test_a_public_address_is_accepted(jwt_server: ServerProcess) -> None:
    stub = rpc.WebhookServiceStub(jwt_server.channel())
    md = bearer(jwt_server.token("carol"))
    hook = stub.CreateWebhook(
        pb.CreateWebhookRequest(url="https://93.184.215.14/hook", description="public"), metadata=md
    )
    assert hook.active
    stub.DeleteWebhook(pb.DeleteWebhookRequest(id=hook.id), metadata=md)


def test_the_guard_checks_again_before_each_delivery() -> None:
    """A delivery re-resolves the host: a name that now points at loopback is refused, not called."""

    async def attempt() -> str:
        sender = Sender(UrlGuard(allow_private=False))
        try:
            outcome = await sender.send("http://localhost:9/hook", "1", b"{}", ["whsec_" + "A" * 44])
        finally:
            await sender.close()
        assert not outcome.success and outcome.status == 0
        return outcome.error

    assert "refused" in asyncio.run(attempt())


def test_allow_private_lets_loopback_through() -> None:
    target = asyncio.run(UrlGuard(allow_private=True).check("http://127.0.0.1:1/x"))
    assert target.address is None
    with pytest.raises(Refused):
        asyncio.run(UrlGuard(allow_private=True).check("gopher://127.0.0.1/x"))
