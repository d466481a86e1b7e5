"""Failed authentications are limited per client address: a token guesser is refused with
RESOURCE_EXHAUSTED and RetryInfo before any signature is checked, while a token the server
verified before still works from the same address."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from taskservice.api import task_service_pb2 as pb
from tests.servers import ServerProcess, bearer
from tests.test_grpcweb import BINARY, Reply, frame


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess.jwt(tmp_path / "server", "--max-auth-failures", "5").start()
    yield server
    server.stop()


def _forged(n: int) -> str:
    return jwt.encode({"sub": f"guess-{n}", "exp": int(time.time()) + 60}, "not the secret " * 3, "HS256")


def test_a_token_guesser_is_throttled_and_a_known_token_still_works(guarded: ServerProcess) -> None:
    stub = guarded.stub()
    alice = bearer(guarded.token("alice"))
    stub.ListTasks(pb.ListTasksRequest(), metadata=alice)  # verified once: known from now on
    codes: list[grpc.StatusCode] = []
    refusal = None
    for n in range(200):
        try:
            stub.ListTasks(pb.ListTasksRequest(), metadata=bearer(_forged(n)), timeout=5)
        except grpc.RpcError as error:
            codes.append(error.code())
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and refusal is None:
                refusal = error
    unauthenticated = codes.count(grpc.StatusCode.UNAUTHENTICATED)
    assert 25 <= unauthenticated < 60, codes  # a burst of 25, then 5 a second
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 200 - unauthenticated
    assert refusal is not None and "too many failed authentications" in (refusal.details() or "")
    status = rpc_status.from_call(refusal)  # type: ignore[arg-type,unused-ignore]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in status.details) and retry.retry_delay.nanos > 0

    stub.ListTasks(pb.ListTasksRequest(), metadata=alice)  # the known token: still served
    with pytest.raises(grpc.RpcError) as fresh:  # a new token waits until the address calms down
        stub.ListTasks(pb.ListTasksRequest(), metadata=bearer(guarded.token("bob")))
    assert fresh.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    time.sleep(1.0)
    stub.ListTasks(pb.ListTasksRequest(), metadata=bearer(guarded.token("bob")))

    # gRPC-Web shares the limit: it counts per address, whatever the port
    for n in range(40):
        answer = httpx.post(
            f"{guarded.http_url}/taskservice.TaskService/ListTasks",
            content=frame(pb.ListTasksRequest()),
            headers={"content-type": BINARY, "authorization": f"Bearer {_forged(n)}"},
            timeout=5,
        )
        last = Reply(answer.content)
    assert last.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
