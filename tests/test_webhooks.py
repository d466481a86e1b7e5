"""Webhooks end to end: a real server POSTs to a real receiver that verifies every signature with the
reference Standard Webhooks library."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.servers import ServerProcess, bearer
from tests.webhook_receiver import Received, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A JWT server whose webhooks may reach the test's own receivers on loopback."""
    proc = ServerProcess.jwt(tmp_path_factory.mktemp("hooks"), "--webhook-allow-private").start()
    yield proc
    proc.stop()


class User:
    """One user's view of a server: both services, with their token."""

    def __init__(self, server: ServerProcess, name: str, *, admin: bool = False) -> None:
        channel = server.channel()
        self.name = name
        self.tasks = rpc.TaskServiceStub(channel)
        self.hooks = rpc.WebhookServiceStub(channel)
        self.md = bearer(server.token(name, admin=admin))

    def create_hook(self, url: str, receiver: Receiver | None = None, **fields: object) -> pb.Webhook:
        request = pb.CreateWebhookRequest(url=url, **fields)  # type: ignore[arg-type]
        hook: pb.Webhook = self.hooks.CreateWebhook(request, metadata=self.md)
        if receiver is not None:
            receiver.secrets.append(hook.secret)
        return hook

    def create_task(self, title: str, **fields: object) -> pb.Task:
        request = pb.CreateTaskRequest(title=title, **fields)  # type: ignore[arg-type]
        task: pb.Task = self.tasks.CreateTask(request, metadata=self.md)
        return task


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code()


def _events(receiver: Receiver) -> list[tuple[str, str]]:
    """(task id, event type) of each event accepted, each sequence once, in order."""
    first: dict[int, Received] = {}
    for r in receiver.accepted:
        first.setdefault(r.id, r)
    return [(r.event["task"]["id"], r.event["eventType"]) for r in first.values()]


def test_webhook_crud_is_owned_by_its_creator(hook_server: ServerProcess, receiver: Receiver) -> None:
    alice, bob = User(hook_server, "alice"), User(hook_server, "bob")
    admin = User(hook_server, "root", admin=True)
    hook = alice.create_hook(receiver.url, statuses=[pb.TASK_STATUS_DONE], labels=["ci"], description="CI")
    assert hook.secret.startswith("whsec_") and hook.active and hook.created_by == "alice"

    got = alice.hooks.GetWebhook(pb.GetWebhookRequest(id=hook.id), metadata=alice.md)
    assert got.secret == "" and got.url == receiver.url and list(got.labels) == ["ci"]
    assert _code(lambda: bob.hooks.GetWebhook(pb.GetWebhookRequest(id=hook.id), metadata=bob.md)) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: bob.hooks.DeleteWebhook(pb.DeleteWebhookRequest(id=hook.id), metadata=bob.md)) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert hook.id not in [
        w.id for w in bob.hooks.ListWebhooks(pb.ListWebhooksRequest(), metadata=bob.md).webhooks
    ]
    assert hook.id in [
        w.id for w in admin.hooks.ListWebhooks(pb.ListWebhooksRequest(), metadata=admin.md).webhooks
    ]

    paused = alice.hooks.UpdateWebhook(pb.UpdateWebhookRequest(id=hook.id, active=False), metadata=alice.md)
    assert not paused.active and paused.secret == ""
    bad_mask = pb.UpdateWebhookRequest(id=hook.id, update_mask=field_mask_pb2.FieldMask(paths=["labels"]))
    assert (
        _code(lambda: alice.hooks.UpdateWebhook(bad_mask, metadata=alice.md))
        == grpc.StatusCode.INVALID_ARGUMENT
    )

    alice.hooks.DeleteWebhook(pb.DeleteWebhookRequest(id=hook.id), metadata=alice.md)
    assert _code(lambda: alice.hooks.GetWebhook(pb.GetWebhookRequest(id=hook.id), metadata=alice.md)) == (
        grpc.StatusCode.NOT_FOUND
    )


def test_bad_webhook_requests_are_invalid_argument(hook_server: ServerProcess) -> None:
    alice = User(hook_server, "alice")
    for request in (
        pb.CreateWebhookRequest(url="ftp://example.com/x"),
        pb.CreateWebhookRequest(url="not a url"),
        pb.CreateWebhookRequest(url="http://user:pw@example.com/"),
        pb.CreateWebhookRequest(url="http://127.0.0.1:1/x", statuses=[99]),  # type: ignore[list-item]
        pb.CreateWebhookRequest(url="http://127.0.0.1:1/x", labels=[""]),
    ):
        code = _code(lambda request=request: alice.hooks.CreateWebhook(request, metadata=alice.md))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, request


def test_signed_events_arrive_in_order_through_failures(hook_server: ServerProcess) -> None:
    """The receiver answers 500 (once with Retry-After) for its first requests, then recovers: every
    event still arrives, signed, in order, and the delivery log shows the failed attempts."""
    failures = {0: (500, {}), 1: (503, {"retry-after": "1"}), 2: (500, {})}
    receiver = Receiver(respond=lambda n: failures.get(n, (200, {})))
    try:
        alice = User(hook_server, "alice")
        hook = alice.create_hook(receiver.url, receiver)
        done = []
        for i in range(20):
            task = alice.create_task(f"hook task {i}")
            if i % 2:
                alice.tasks.UpdateTask(
                    pb.UpdateTaskRequest(id=task.id, status=pb.TASK_STATUS_DONE), metadata=alice.md
                )
                done.append(task.id)
        ids = receiver.wait_for(30, timeout=60)
        assert ids == sorted(ids)
        assert all(r.verified_by == [hook.secret] for r in receiver.requests)
        events = _events(receiver)
        assert len(events) == 30
        assert sorted(t for t, kind in events if kind == "EVENT_TYPE_UPDATED") == sorted(done)
        assert [r.status for r in receiver.requests[:4]] == [500, 503, 500, 200]

        deliveries = alice.hooks.ListWebhookDeliveries(
            pb.ListWebhookDeliveriesRequest(webhook_id=hook.id, page_size=1000), metadata=alice.md
        ).deliveries
        failed = [d for d in deliveries if not d.success]
        assert [d.http_status for d in reversed(failed)] == [500, 503, 500]
        assert all(d.attempt > 1 for d in deliveries if d.success and d.sequence == failed[0].sequence)
        state = alice.hooks.GetWebhook(pb.GetWebhookRequest(id=hook.id), metadata=alice.md)
        assert state.active and state.last_error == ""
    finally:
        receiver.close()


def test_a_webhook_never_receives_another_users_private_task(hook_server: ServerProcess) -> None:
    alice_inbox, admin_inbox = Receiver(), Receiver()
    try:
        alice, bob = User(hook_server, "alice-private"), User(hook_server, "bob-private")
        admin = User(hook_server, "root", admin=True)
        alice.create_hook(alice_inbox.url, alice_inbox)
        admin.create_hook(admin_inbox.url, admin_inbox)
        mine = alice.create_task("alice's own")
        secret = bob.create_task("bob's secret")
        shared = bob.create_task("bob's, assigned to alice", assigned_to="alice-private")
        bob.tasks.UpdateTask(pb.UpdateTaskRequest(id=secret.id, title="still secret"), metadata=bob.md)
        last = bob.create_task("bob's last")
        admin_inbox.wait_for(5)
        alice_inbox.wait_for(2)
        assert {task for task, _ in _events(admin_inbox)} == {mine.id, secret.id, shared.id, last.id}
        assert [task for task, _ in _events(alice_inbox)] == [mine.id, shared.id]
    finally:
        alice_inbox.close()
        admin_inbox.close()


def test_rotated_secret_signs_beside_the_old_one(hook_server: ServerProcess, receiver: Receiver) -> None:
    alice = User(hook_server, "alice-rotate")
    hook = alice.create_hook(receiver.url, receiver)
    alice.create_task("before rotation")
    receiver.wait_for(1)
    rotate = pb.UpdateWebhookRequest(id=hook.id, update_mask=field_mask_pb2.FieldMask(paths=["secret"]))
    rotated = alice.hooks.UpdateWebhook(rotate, metadata=alice.md)
    assert rotated.secret.startswith("whsec_") and rotated.secret != hook.secret
    receiver.secrets.append(rotated.secret)
    alice.create_task("after rotation")
    receiver.wait_for(2)
    first, second = receiver.accepted[0], receiver.accepted[-1]
    assert first.verified_by == [hook.secret]
    assert sorted(second.verified_by) == sorted([hook.secret, rotated.secret])
    assert len(second.signatures.split(" ")) == 2


def test_410_gone_disables_the_webhook(hook_server: ServerProcess) -> None:
    receiver = Receiver(respond=lambda _: (410, {}))
    try:
        alice = User(hook_server, "alice-gone")
        hook = alice.create_hook(receiver.url, receiver)
        alice.create_task("to a gone endpoint")
        _wait_until(lambda: not _get(alice, hook.id).active)
        state = _get(alice, hook.id)
        assert "410" in state.last_error
        alice.create_task("never sent")
        count = len(receiver.requests)
        assert count == 1
    finally:
        receiver.close()


def test_a_slow_endpoint_does_not_delay_another(hook_server: ServerProcess) -> None:
    slow, fast = Receiver(delay=3.0), Receiver()
    try:
        alice = User(hook_server, "alice-slow")
        alice.create_hook(slow.url, slow)
        alice.create_hook(fast.url, fast)
        for i in range(5):
            alice.create_task(f"slow and fast {i}")
        fast.wait_for(5, timeout=2.5)  # the slow receiver has not even answered its first yet
    finally:
        slow.close()
        fast.close()


def test_failing_for_the_whole_window_disables_with_last_error(tmp_path: Path) -> None:
    receiver = Receiver(respond=lambda _: (500, {}))
    server = ServerProcess(tmp_path / "window", "--webhook-allow-private", "--webhook-retry-window", "2")
    try:
        server.start()
        user = User(server, "anonymous")
        hook = user.create_hook(receiver.url, receiver)
        user.create_task("never accepted")
        _wait_until(lambda: not _get(user, hook.id).active, timeout=20)
        state = _get(user, hook.id)
        assert "failed for 2 s" in state.last_error and "HTTP 500" in state.last_error
        assert len(receiver.requests) >= 2
    finally:
        server.kill()
        receiver.close()


def test_delivery_resumes_after_kill_9(tmp_path: Path) -> None:
    """SIGKILL while delivering: after the restart every event still arrives, in order; a receiver
    deduplicating on webhook-id sees each once."""
    receiver = Receiver(delay=0.01)
    server = ServerProcess(tmp_path / "kill", "--webhook-allow-private")
    try:
        server.start()
        user = User(server, "anonymous")
        user.create_hook(receiver.url, receiver)
        for i in range(300):
            user.create_task(f"kill {i}")
        receiver.wait_for(50)
        server.kill()
        before = len(receiver.accepted_ids())
        assert before < 300, "delivery finished before the kill; slow the receiver down"
        server.start()
        ids = receiver.wait_for(300, timeout=60)
        assert ids == sorted(ids) and len(ids) == 300
        assert all(r.verified_by for r in receiver.requests)
    finally:
        server.kill()
        receiver.close()


def _get(user: User, hook_id: str) -> pb.Webhook:
    hook: pb.Webhook = user.hooks.GetWebhook(pb.GetWebhookRequest(id=hook_id), metadata=user.md)
    return hook


def _wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_paused_webhook_resumes_from_its_cursor(hook_server: ServerProcess, receiver: Receiver) -> None:
    alice = User(hook_server, "alice-pause")
    hook = alice.create_hook(receiver.url, receiver)
    alice.create_task("before the pause")
    receiver.wait_for(1)
    alice.hooks.UpdateWebhook(pb.UpdateWebhookRequest(id=hook.id, active=False), metadata=alice.md)
    paused = [alice.create_task(f"while paused {i}").id for i in range(3)]
    time.sleep(1.5)  # a dispatcher round: nothing may be sent meanwhile
    assert len(receiver.accepted_ids()) == 1
    alice.hooks.UpdateWebhook(pb.UpdateWebhookRequest(id=hook.id, active=True), metadata=alice.md)
    receiver.wait_for(4)
    assert [task for task, _ in _events(receiver)][1:] == paused
