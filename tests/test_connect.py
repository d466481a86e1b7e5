"""The Connect protocol on the HTTP port, on the wire with a plain HTTP client, beside gRPC-Web."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from google.rpc import error_details_pb2

from taskservice.api import task_service_pb2 as pb
from taskservice.transport.methods import TASK_SERVICE
from tests.servers import ServerProcess
from tests.test_grpcweb import BINARY, TEXT, call, frame

PREFIX = "/taskservice.TaskService/"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    proc = ServerProcess.jwt(tmp_path_factory.mktemp("connect")).start()
    headers = {"authorization": f"Bearer {proc.token('alice')}", "connect-protocol-version": "1"}
    with httpx.Client(base_url=proc.http_url, headers=headers, timeout=10) as client:
        yield proc, client
    proc.stop()


def envelope(data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    out, offset = [], 0
    while offset < len(body):
        flags, length = struct.unpack_from(">BI", body, offset)
        out.append((flags, body[offset + 5 : offset + 5 + length]))
        offset += 5 + length
    return out


def test_unary_json_round_trips(api: tuple[ServerProcess, httpx.Client], tag: str) -> None:
    _, client = api
    answer = client.post(PREFIX + "CreateTask", json={"title": "over connect", "labels": [tag]})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    created = answer.json()
    assert created["createdBy"] == "alice" and answer.headers["x-request-id"]
    got = client.post(PREFIX + "GetTask", json={"id": created["id"]})
    assert got.json() == created


def test_unary_binary_round_trips(api: tuple[ServerProcess, httpx.Client]) -> None:
    _, client = api
    request = pb.CreateTaskRequest(title="binary").SerializeToString()
    answer = client.post(
        PREFIX + "CreateTask", content=request, headers={"content-type": "application/proto"}
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/proto"
    task = pb.Task.FromString(answer.content)
    assert task.title == "binary" and task.version == 1


def test_side_effect_free_methods_answer_get(api: tuple[ServerProcess, httpx.Client]) -> None:
    _, client = api
    created = client.post(PREFIX + "CreateTask", json={"title": "by get"}).json()
    message = quote(json.dumps({"id": created["id"]}))
    got = client.get(f"{PREFIX}GetTask?encoding=json&message={message}")
    assert got.status_code == 200 and got.json()["id"] == created["id"]
    binary = (
        base64.urlsafe_b64encode(pb.GetTaskRequest(id=created["id"]).SerializeToString()).decode().rstrip("=")
    )
    got = client.get(f"{PREFIX}GetTask?encoding=proto&base64=1&message={binary}")
    assert pb.Task.FromString(got.content).id == created["id"]
    # CreateTask changes state: never over GET.
    assert client.get(f"{PREFIX}CreateTask?encoding=json&message=%7B%7D").status_code == 405


def test_errors_use_connect_codes_and_http_statuses(api: tuple[ServerProcess, httpx.Client]) -> None:
    proc, client = api
    invalid = client.post(PREFIX + "CreateTask", json={"title": " "})
    assert invalid.status_code == 400
    error = invalid.json()
    assert error["code"] == "invalid_argument" and "title" in error["message"]
    detail = error["details"][0]
    assert detail["type"] == "google.rpc.BadRequest"
    bad = error_details_pb2.BadRequest.FromString(
        base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    )
    assert bad.field_violations[0].field == "title"
    missing = client.post(PREFIX + "GetTask", json={"id": "no-such-task"})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert (
        client.post(
            PREFIX + "GetTask", content=b"{", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    stale = client.post(PREFIX + "CreateTask", json={"title": "v"}).json()
    conflict = client.post(
        PREFIX + "UpdateTask", json={"id": stale["id"], "title": "w", "expectedVersion": 7}
    )
    assert conflict.status_code == 409 and conflict.json()["code"] == "aborted"
    anonymous = httpx.post(f"{proc.http_url}{PREFIX}ListTasks", json={}, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"
    unknown = client.post(PREFIX + "NoSuchMethod", json={})
    assert unknown.status_code == 501 and unknown.json()["code"] == "unimplemented"
    assert (
        client.post(PREFIX + "GetTask", content=b"{}", headers={"content-type": "text/plain"}).status_code
        == 415
    )
    compressed = client.post(
        PREFIX + "ListTasks",
        content=b"{}",
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert compressed.status_code == 501


def test_idempotent_create_with_request_id(api: tuple[ServerProcess, httpx.Client], tag: str) -> None:
    _, client = api
    body = {"title": "once", "labels": [tag], "requestId": f"r-{tag}"}
    first = client.post(PREFIX + "CreateTask", json=body).json()
    assert client.post(PREFIX + "CreateTask", json=body).json()["id"] == first["id"]


@pytest.mark.parametrize("content_type", ["application/connect+json", "application/connect+proto"])
def test_watch_streams_enveloped_events_then_end_stream(
    api: tuple[ServerProcess, httpx.Client], tag: str, content_type: str
) -> None:
    _, client = api
    created = client.post(PREFIX + "CreateTask", json={"title": "watched", "labels": [tag]}).json()
    as_json = content_type.endswith("json")
    request = pb.WatchTasksRequest(labels=[tag], include_initial=True)
    data = (
        json.dumps({"labels": [tag], "includeInitial": True}).encode()
        if as_json
        else request.SerializeToString()
    )
    with client.stream(
        "POST", PREFIX + "WatchTasks", content=envelope(data), headers={"content-type": content_type}
    ) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"] == content_type
        received = b""
        for chunk in answer.iter_bytes():
            received += chunk
            if len(received) >= 5 and len(received) >= 5 + struct.unpack_from(">I", received, 1)[0]:
                break
    flags, payload = envelopes(received)[0]
    assert flags == 0
    task_id = json.loads(payload)["task"]["id"] if as_json else pb.TaskEvent.FromString(payload).task.id
    assert task_id == created["id"]


def test_stream_errors_arrive_in_the_end_stream_message(api: tuple[ServerProcess, httpx.Client]) -> None:
    _, client = api
    data = json.dumps({"afterSequence": "-1"}).encode()
    answer = client.post(
        PREFIX + "WatchTasks", content=envelope(data), headers={"content-type": "application/connect+json"}
    )
    assert answer.status_code == 200
    ((flags, payload),) = envelopes(answer.content)
    assert flags == 0x02
    assert json.loads(payload)["error"]["code"] == "invalid_argument"


def test_every_unary_method_of_the_table_answers_connect(api: tuple[ServerProcess, httpx.Client]) -> None:
    _, client = api
    for method in TASK_SERVICE.methods:
        if method.client_streaming or method.server_streaming:
            continue
        answer = client.post(PREFIX + method.name, json={})
        # Implemented ones answer (an empty request may be invalid); the others say unimplemented.
        assert answer.status_code in (200, 400, 404, 501), (method.name, answer.text)
        assert answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize("content_type", [BINARY, TEXT])
def test_grpc_web_still_answers_on_the_same_path(
    api: tuple[ServerProcess, httpx.Client], content_type: str
) -> None:
    proc, _ = api
    token = {"authorization": f"Bearer {proc.token('alice')}"}
    _, reply = call(
        proc.http_url, "CreateTask", frame(pb.CreateTaskRequest(title="grpc-web")), content_type, **token
    )
    assert reply.code == 0 and pb.Task.FromString(reply.messages[0]).title == "grpc-web"
