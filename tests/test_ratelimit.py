"""Rate limits and quotas: a call over the user's rate gets RESOURCE_EXHAUSTED with RetryInfo, each
message of a stream counts and waits for its token, other users are unaffected; open streams per
user, streams per connection and items per bulk stream are bounded."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from taskservice.access.ratelimit import RateLimiter
from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.domain.errors import ResourceExhausted
from tests.servers import ServerProcess, bearer

RATE, BURST = 5, 20


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess.jwt(
        tmp_path_factory.mktemp("limited"),
        "--rate-limit",
        str(RATE),
        "--rate-burst",
        str(BURST),
        "--max-streams-per-user",
        "2",
        "--max-streams-per-service",
        "3",
        "--max-bulk-items",
        "5",
        "--max-streams-per-connection",
        "4",
    ).start()
    yield proc
    proc.stop()


def _user(server: ServerProcess) -> list[tuple[str, str]]:
    return bearer(server.token("u-" + uuid.uuid4().hex[:8]))


def _retry_delay(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            seconds: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            return seconds
    raise AssertionError("no RetryInfo in the status details")


def _calls_until_refused(call: Callable[[], object]) -> tuple[int, float, grpc.RpcError]:
    """Call until refused; returns the successes, the seconds it took (the bucket refills meanwhile)
    and the refusal."""
    start, succeeded = time.monotonic(), 0
    with pytest.raises(grpc.RpcError) as refused:
        for _ in range(BURST * 5):
            call()
            succeeded += 1
    return succeeded, time.monotonic() - start, refused.value


def test_a_user_over_the_rate_is_told_when_to_retry_and_others_are_unaffected(limited: ServerProcess) -> None:
    stub, noisy, quiet = limited.stub(), _user(limited), _user(limited)
    request = pb.ListTasksRequest(page_size=1)
    succeeded, took, refused = _calls_until_refused(lambda: stub.ListTasks(request, metadata=noisy))
    assert BURST <= succeeded <= BURST + took * RATE + 1
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = _retry_delay(refused)
    assert 0 < delay <= 1 / RATE
    for _ in range(BURST):
        stub.ListTasks(request, metadata=quiet)  # a full burst of its own
    time.sleep(delay + 0.05)
    stub.ListTasks(request, metadata=noisy)


def test_each_command_of_a_stream_counts_and_is_paced_to_the_rate(limited: ServerProcess) -> None:
    stub, user = limited.stub(), _user(limited)
    extra = 5  # commands beyond the burst: they wait for tokens, one per 1/RATE seconds
    commands = [
        pb.TaskCommand(command_id=str(i), get=pb.GetTaskRequest(id=f"id-{i}")) for i in range(BURST + extra)
    ]
    start = time.monotonic()
    answered = list(stub.ProcessTaskStream(iter(commands), metadata=user, timeout=30))
    took = time.monotonic() - start
    assert [r.command_id for r in answered] == [c.command_id for c in commands]  # none lost, in order
    assert took >= (extra + 1) / RATE * 0.9  # the call and the commands took BURST + extra + 1 tokens
    with pytest.raises(grpc.RpcError) as refused:  # and the stream spent the user's bucket for calls too
        stub.ListTasks(pb.ListTasksRequest(page_size=1), metadata=user)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _retry_delay(refused.value) > 0


def test_open_streams_per_user_are_bounded(limited: ServerProcess) -> None:
    stub, user, other = limited.stub(), _user(limited), _user(limited)

    def open_watch(md: list[tuple[str, str]]) -> grpc.Future:
        ready = stub.CreateTask(pb.CreateTaskRequest(title="ready"), metadata=md)
        call = stub.WatchTasks(
            pb.WatchTasksRequest(include_initial=True, task_ids=[ready.id]), metadata=md, timeout=10
        )
        next(call)  # the initial state arrived: the stream is open on the server
        return call

    first, second = open_watch(user), open_watch(user)
    with pytest.raises(grpc.RpcError) as refused:
        open_watch(user)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    other_watch = open_watch(other)  # the quota is per user
    first.cancel()
    time.sleep(0.3)  # the server ends its side of the cancelled call
    again = open_watch(user)
    for call in (second, other_watch, again):
        call.cancel()


def test_service_accounts_hold_more_streams_and_admins_are_not_counted(limited: ServerProcess) -> None:
    """Each watch on a channel of its own: the connection's stream limit (4) stays out of it."""
    opened: list[grpc.Channel] = []
    watches: list[Iterator[pb.TaskEvent]] = []  # held: a call that is garbage collected is cancelled

    def open_watch(md: list[tuple[str, str]]) -> None:
        channel = grpc.insecure_channel(limited.grpc_addr, options=[("grpc.use_local_subchannel_pool", 1)])
        opened.append(channel)
        stub = rpc.TaskServiceStub(channel)
        ready = stub.CreateTask(pb.CreateTaskRequest(title="ready"), metadata=md)
        call = stub.WatchTasks(
            pb.WatchTasksRequest(include_initial=True, task_ids=[ready.id]), metadata=md, timeout=10
        )
        next(call)
        watches.append(call)

    service = bearer(limited.token("svc-" + uuid.uuid4().hex[:8], service=True))
    admin = bearer(limited.token("adm-" + uuid.uuid4().hex[:8], admin=True))
    try:
        for _ in range(3):  # above the per-user quota of 2
            open_watch(service)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            open_watch(service)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - started < 2  # refused at once, never held waiting for a slot
        for _ in range(5):
            open_watch(admin)
    finally:
        for channel in opened:
            channel.close()


def test_deadlines_end_streams_and_free_their_slots(limited: ServerProcess) -> None:
    stub, user = limited.stub(), _user(limited)
    request = pb.WatchTasksRequest(task_ids=["none"])
    for _ in range(2):  # twice the per-user quota, one after the other
        calls = [stub.WatchTasks(request, metadata=user, timeout=0.5) for _ in range(2)]
        for call in calls:
            with pytest.raises(grpc.RpcError) as ended:
                next(call)
            assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.5)  # the server ends its side of the calls on the same deadline


def test_calls_beyond_the_connections_stream_limit_wait_for_a_free_stream(limited: ServerProcess) -> None:
    channel = grpc.insecure_channel(limited.grpc_addr, options=[("grpc.use_local_subchannel_pool", 1)])
    stub = rpc.TaskServiceStub(channel)
    users = [_user(limited) for _ in range(5)]  # different users: the per-user quota stays out of it
    ready = [stub.CreateTask(pb.CreateTaskRequest(title="ready"), metadata=md) for md in users]
    watches = [
        stub.WatchTasks(
            pb.WatchTasksRequest(include_initial=True, task_ids=[task.id]), metadata=md, timeout=10
        )
        for task, md in zip(ready, users, strict=True)
    ]
    try:
        for watch in watches[:4]:
            assert next(watch).task.title == "ready"
        with ThreadPoolExecutor(1) as pool:
            fifth = pool.submit(next, watches[4])
            with pytest.raises(FutureTimeout):
                fifth.result(timeout=0.5)  # queued: the connection allows four streams
            watches[0].cancel()
            assert fifth.result(timeout=5).task.title == "ready"  # it got the freed stream
    finally:
        for watch in watches:
            watch.cancel()
        channel.close()


def test_bulk_stream_items_are_bounded(limited: ServerProcess) -> None:
    stub, user = limited.stub(), _user(limited)
    requests = (pb.CreateTaskRequest(title=f"item {i}") for i in range(10))
    with pytest.raises(grpc.RpcError) as refused:
        stub.BulkCreateTasks(requests, metadata=user)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 5" in refused.value.details()


# -- the bucket itself, on a controlled clock ----------------------------------------------------------


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(ResourceExhausted) as refused:
        limiter.take("a")
    assert refused.value.retry_after == pytest.approx(0.5)
    limiter.take("b")  # another user's bucket is full
    now[0] += 0.5
    limiter.take("a")
    with pytest.raises(ResourceExhausted):
        limiter.take("a")


def test_wait_takes_a_token_once_one_is_available() -> None:
    limiter = RateLimiter(rate=20, burst=1)
    start = time.monotonic()
    for _ in range(3):
        asyncio.run(limiter.wait("a"))
    assert time.monotonic() - start >= 2 / 20 * 0.9


def test_refused_attempts_do_not_push_the_retry_time_back() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1, burst=1, clock=lambda: now[0])
    limiter.take("a")
    for _ in range(50):
        with pytest.raises(ResourceExhausted):
            limiter.take("a")
    now[0] += 1.0
    limiter.take("a")


def test_rate_zero_means_no_limit() -> None:
    limiter = RateLimiter(rate=0)
    for _ in range(10_000):
        limiter.take("a")
