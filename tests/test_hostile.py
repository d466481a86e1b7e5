"""Hostile input: oversized messages, undecodable bytes, invalid UTF-8 and NUL characters get clean
statuses; a fuzz test throws random and malformed messages and tokens at a live server and checks
every answer is a deliberate status, the server stays up and its store stays consistent."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from taskservice.api import task_service_pb2 as pb
from tests.rpc import expect_code, violations
from tests.servers import ServerProcess, bearer

M = TypeVar("M", bound=Message)


def _message(cls: type[M]) -> Callable[[dict[str, Any]], M]:
    """A message built from hypothesis' generated fields (which it types only as objects)."""
    return lambda fields: cls(**fields)


SERVICE = "/taskservice.TaskService/"
# Statuses that would mean the server failed rather than judged the input.
NOT_CLEAN = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}


def _raw_unary(server: ServerProcess, method: str) -> Callable[..., bytes]:
    call: Callable[..., bytes] = server.channel().unary_unary(SERVICE + method)  # bytes in, bytes out
    return call


def test_oversized_message_is_refused_with_resource_exhausted(jwt_server: ServerProcess) -> None:
    request = pb.CreateTaskRequest(title="big", description="x" * (5 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as refused:
        jwt_server.stub().CreateTask(request, metadata=bearer(jwt_server.token("big")), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0a\x02\xff\xfe",  # title = invalid UTF-8
        b"\x22\x03a\xc3\x28",  # labels[0] = invalid UTF-8
        b"\x0a\x05hello\xff",  # a field tag that is not a field
        b"\x0a\xff\xff\xff\xff\x0f",  # a length beyond the message
    ],
)
def test_undecodable_requests_are_invalid_argument(jwt_server: ServerProcess, payload: bytes) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        _raw_unary(jwt_server, "CreateTask")(payload, metadata=bearer(jwt_server.token("raw")), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_nul_characters_are_invalid_argument_naming_every_field(jwt_server: ServerProcess) -> None:
    request = pb.CreateTaskRequest(
        title="a\x00b", labels=["l\x00"], metadata={"k": "v\x00"}, assigned_to="\x00"
    )
    error = expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: jwt_server.stub().CreateTask(request, metadata=bearer(jwt_server.token("nul"))),
    )
    assert {"title", "labels[0]", "assigned_to"} <= set(violations(error))


def test_watch_task_ids_are_checked_like_any_id(jwt_server: ServerProcess) -> None:
    md = bearer(jwt_server.token("watcher"))
    for bad in ("a\x00b", "x" * 129, ""):
        call = jwt_server.stub().WatchTasks(pb.WatchTasksRequest(task_ids=[bad]), metadata=md, timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            next(call)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad


def test_malformed_message_in_a_stream_ends_it_with_invalid_argument(jwt_server: ServerProcess) -> None:
    channel, md = jwt_server.channel(), bearer(jwt_server.token("streamer"))
    good = pb.CreateTaskRequest(title="fine").SerializeToString()
    with pytest.raises(grpc.RpcError) as refused:
        channel.stream_unary(SERVICE + "BulkCreateTasks")(
            iter([good, b"\x0a\x01\xff"]), metadata=md, timeout=5
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_malformed_command_is_answered_and_the_process_stream_goes_on(jwt_server: ServerProcess) -> None:
    """One undecodable TaskCommand gets its own INVALID_ARGUMENT result; the commands after it are
    still answered, as for any failed command."""
    channel, md = jwt_server.channel(), bearer(jwt_server.token("streamer"))
    before = pb.TaskCommand(command_id="a", create=pb.CreateTaskRequest(title="before")).SerializeToString()
    after = pb.TaskCommand(command_id="c", create=pb.CreateTaskRequest(title="after")).SerializeToString()
    answers = list(
        channel.stream_stream(SERVICE + "ProcessTaskStream")(
            iter([before, b"\xff\xff", after]), metadata=md, timeout=5
        )
    )
    results = [pb.TaskResult.FromString(answer) for answer in answers]
    assert [(r.command_id, r.success, r.code) for r in results] == [
        ("a", True, 0),
        ("", False, grpc.StatusCode.INVALID_ARGUMENT.value[0]),
        ("c", True, 0),
    ]
    assert "not a valid taskservice.TaskCommand" in results[1].error_message
    assert results[2].task.title == "after"


# -- fuzzing -------------------------------------------------------------------------------------------

_int32 = st.integers(-(2**31), 2**31 - 1)
_int64 = st.integers(-(2**63), 2**63 - 1)
_texts = st.text(max_size=40) | st.text(alphabet="\x00a ", max_size=5) | st.just("x" * 300)
_timestamps = st.builds(lambda s, n: {"seconds": s, "nanos": n}, _int64, _int32)
_create = st.fixed_dictionaries(
    {},
    optional={
        "title": _texts,
        "description": _texts,
        "priority": _int32,
        "labels": st.lists(_texts, max_size=4),
        "assigned_to": _texts,
        "due_date": _timestamps,
        "metadata": st.dictionaries(_texts, _texts, max_size=3),
        "request_id": _texts,
    },
).map(_message(pb.CreateTaskRequest))
_ids = st.text(max_size=10) | st.uuids().map(str)
_update = st.fixed_dictionaries(
    {"id": _ids},
    optional={
        "title": _texts,
        "status": _int32,
        "priority": _int32,
        "labels": st.lists(_texts, max_size=3),
        "expected_version": _int64,
        "update_mask": st.lists(
            st.sampled_from(["title", "labels", "metadata", "bogus", ""]), max_size=3
        ).map(lambda paths: {"paths": paths}),
    },
).map(_message(pb.UpdateTaskRequest))
_list = st.fixed_dictionaries(
    {},
    optional={
        "page_size": _int32,
        "page_token": _texts,
        "statuses": st.lists(_int32, max_size=3),
        "labels": st.lists(_texts, max_size=3),
        "order_by": st.sampled_from(["", "priority", "due_date", "nonsense"]),
        "created_by": _texts,
    },
).map(_message(pb.ListTasksRequest))
_watch = st.fixed_dictionaries(
    {},
    optional={
        "task_ids": st.lists(_ids, max_size=3),
        "statuses": st.lists(_int32, max_size=3),
        "include_initial": st.booleans(),
        "after_sequence": _int64,
    },
).map(_message(pb.WatchTasksRequest))
_command = st.one_of(
    _create.map(lambda r: pb.TaskCommand(create=r)),
    _update.map(lambda r: pb.TaskCommand(update=r)),
    _ids.map(lambda i: pb.TaskCommand(delete=pb.DeleteTaskRequest(id=i))),
    _ids.map(lambda i: pb.TaskCommand(get=pb.GetTaskRequest(id=i))),
    st.just(pb.TaskCommand()),
)
MESSAGES: dict[str, st.SearchStrategy[Any]] = {
    "CreateTask": _create,
    "GetTask": _ids.map(lambda i: pb.GetTaskRequest(id=i)),
    "UpdateTask": _update,
    "DeleteTask": st.builds(pb.DeleteTaskRequest, id=_ids, expected_version=_int64),
    "ListTasks": _list,
    "WatchTasks": _watch,
    "BulkCreateTasks": _create,
    "ProcessTaskStream": _command,
}


def _payloads(method: str) -> st.SearchStrategy[bytes]:
    encoded = MESSAGES[method].map(lambda m: m.SerializeToString())
    mangled = st.tuples(encoded, st.integers(0, 64), st.binary(min_size=1, max_size=3)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )
    return st.one_of(encoded, encoded, mangled, st.binary(max_size=64))


_token_chars = string.ascii_letters + string.digits + "-_.=+/"
_valid_users = st.sampled_from(["alice", "bob", "root"])  # a valid token for that user (root is an admin)
_credentials = st.one_of(
    _valid_users,
    _valid_users,
    _valid_users,
    st.just(""),
    st.text(alphabet=_token_chars, max_size=80).map(lambda t: "Bearer " + t),
    st.text(alphabet=_token_chars + " ", max_size=40),
)


@st.composite
def _calls(draw: st.DrawFn) -> tuple[str, list[bytes], str]:
    method = draw(st.sampled_from(sorted(MESSAGES)))
    count = 1 if method not in ("BulkCreateTasks", "ProcessTaskStream") else draw(st.integers(0, 4))
    return method, [draw(_payloads(method)) for _ in range(count)], draw(_credentials)


def _metadata(server: ServerProcess, credentials: str) -> list[tuple[str, str]]:
    if credentials in ("alice", "bob", "root"):
        return bearer(server.token(f"fuzz-{credentials}", admin=credentials == "root"))
    return [("authorization", credentials)] if credentials.strip() == credentials and credentials else []


def _send(
    channel: grpc.Channel, method: str, payloads: list[bytes], md: list[tuple[str, str]]
) -> list[bytes]:
    path = SERVICE + method
    if method == "WatchTasks":
        answers: list[bytes] = []
        call = channel.unary_stream(path)(payloads[0], metadata=md, timeout=0.3)
        try:
            answers.extend(call)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # a healthy open watch times out
                raise
        return answers
    if method == "BulkCreateTasks":
        return [channel.stream_unary(path)(iter(payloads), metadata=md, timeout=5)]
    if method == "ProcessTaskStream":
        return list(channel.stream_stream(path)(iter(payloads), metadata=md, timeout=5))
    return [channel.unary_unary(path)(payloads[0], metadata=md, timeout=5)]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=_calls())
def test_fuzzed_calls_get_clean_statuses(
    jwt_server: ServerProcess, call: tuple[str, list[bytes], str]
) -> None:
    method, payloads, credentials = call
    channel = _fuzz_channel(jwt_server)
    try:
        answers = _send(channel, method, payloads, _metadata(jwt_server, credentials))
    except grpc.RpcError as error:
        event(f"{method}: {error.code().name}")
        assert error.code() not in NOT_CLEAN, (method, error.code(), error.details())
        return
    event(f"{method}: OK")
    if method == "ProcessTaskStream":
        for answer in answers:
            result = pb.TaskResult.FromString(answer)
            assert result.success or result.code not in (2, 13), result


_channels: dict[int, grpc.Channel] = {}


def _fuzz_channel(server: ServerProcess) -> grpc.Channel:
    """One channel for the whole fuzz run (a channel per example would mostly test connection set-up)."""
    if id(server) not in _channels:
        _channels[id(server)] = server.channel()
    return _channels[id(server)]


def test_after_fuzzing_the_server_is_up_and_its_store_consistent(jwt_server: ServerProcess) -> None:
    """Runs after the fuzz test (pytest keeps file order)."""
    assert jwt_server.proc is not None and jwt_server.proc.poll() is None
    channel = jwt_server.channel()
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "rpc.internal_error" not in jwt_server.log()

    stub, admin = jwt_server.stub(), bearer(jwt_server.token("auditor", admin=True))
    seen: dict[str, pb.Task] = {}
    token, totals = "", set()
    while True:
        page = stub.ListTasks(pb.ListTasksRequest(page_size=500, page_token=token), metadata=admin)
        totals.add(page.total_count)
        for task in page.tasks:
            assert task.id not in seen
            seen[task.id] = task
        token = page.next_page_token
        if not token:
            break
    assert totals == {len(seen)}
    for task in seen.values():
        assert stub.GetTask(pb.GetTaskRequest(id=task.id), metadata=admin) == task
        assert 1 <= len(task.title) <= 200 and "\x00" not in task.title and task.title == task.title.strip()
        assert task.created_by and task.version >= 1
        assert task.status in pb.TaskStatus.values() and task.status != pb.TASK_STATUS_UNSPECIFIED
        assert task.priority in pb.Priority.values() and task.priority != pb.PRIORITY_UNSPECIFIED
        try:
            pb.Task.FromString(task.SerializeToString())
        except DecodeError:
            pytest.fail(f"task {task.id} does not round-trip")
