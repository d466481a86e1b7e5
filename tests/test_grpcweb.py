"""gRPC-Web on the HTTP port, checked on the wire with a plain HTTP client (binary and text modes)."""

from __future__ import annotations

import base64
import concurrent.futures
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import jwt
import pytest
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from taskservice.api import task_service_pb2 as pb
from tests.servers import ServerProcess

BINARY = "application/grpc-web+proto"
TEXT = "application/grpc-web-text"
ORIGIN = "https://board.example"


def frame(message: Message | bytes, flag: int = 0) -> bytes:
    payload = message if isinstance(message, bytes) else message.SerializeToString()
    return struct.pack(">BI", flag, len(payload)) + payload


def b64decode_chunks(text: bytes) -> bytes:
    """Decode base64 that may be several padded chunks back to back (as servers stream it)."""
    out = b""
    for i in range(0, len(text), 4):
        out += base64.b64decode(text[i : i + 4])
    return out


class Reply:
    """A parsed gRPC-Web response body: the data frames and the trailer block."""

    def __init__(self, body: bytes) -> None:
        self.messages: list[bytes] = []
        self.trailers: dict[str, str] = {}
        offset = 0
        while offset < len(body):
            flag, length = struct.unpack_from(">BI", body, offset)
            payload = body[offset + 5 : offset + 5 + length]
            assert len(payload) == length, "truncated frame"
            offset += 5 + length
            if flag & 0x80:
                assert not self.trailers, "more than one trailer frame"
                for line in payload.decode("ascii").split("\r\n"):
                    if line:
                        name, _, value = line.partition(":")
                        self.trailers[name.strip().lower()] = value.strip()
            else:
                assert not self.trailers, "data frame after the trailer frame"
                self.messages.append(payload)
        assert self.trailers, "no trailer frame"

    @property
    def code(self) -> int:
        return int(self.trailers["grpc-status"])

    @property
    def message(self) -> str:
        return unquote(self.trailers.get("grpc-message", ""))

    def status(self) -> status_pb2.Status:
        value = self.trailers["grpc-status-details-bin"]
        return status_pb2.Status.FromString(base64.b64decode(value + "=" * (-len(value) % 4)))


def call(
    base_url: str, method: str, body: bytes, content_type: str = BINARY, **headers: str
) -> tuple[httpx.Response, Reply]:
    text = content_type.startswith("application/grpc-web-text")
    answer = httpx.post(
        f"{base_url}/taskservice.TaskService/{method}",
        content=base64.b64encode(body) if text else body,
        headers={"content-type": content_type, "x-grpc-web": "1", **headers},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    raw = b64decode_chunks(answer.content) if text else answer.content
    return answer, Reply(raw)


@pytest.mark.parametrize(
    "content_type", [BINARY, "application/grpc-web", TEXT, "application/grpc-web-text+proto"]
)
def test_unary_call_round_trips_in_both_modes(server: ServerProcess, tag: str, content_type: str) -> None:
    answer, reply = call(
        server.http_url,
        "CreateTask",
        frame(pb.CreateTaskRequest(title="from a browser", labels=[tag])),
        content_type,
    )
    expected = "application/grpc-web-text+proto" if "text" in content_type else BINARY
    assert answer.headers["content-type"] == expected
    assert reply.trailers == {"grpc-status": "0"}
    (data,) = reply.messages
    created = pb.Task.FromString(data)
    assert created.title == "from a browser" and created.version == 1
    # The gRPC port sees the very same task: one service layer behind both.
    assert server.stub().GetTask(pb.GetTaskRequest(id=created.id)) == created


def test_text_mode_accepts_a_body_sent_as_several_padded_chunks(server: ServerProcess, tag: str) -> None:
    data = frame(pb.CreateTaskRequest(title="chunked", labels=[tag]))
    body = base64.b64encode(data[:5]) + base64.b64encode(data[5:])  # "AAAAAB0=" then the message
    assert b"=" in body[:-2]
    answer = httpx.post(
        f"{server.http_url}/taskservice.TaskService/CreateTask",
        content=body,
        headers={"content-type": TEXT},
    )
    reply = Reply(b64decode_chunks(answer.content))
    assert reply.code == 0
    assert pb.Task.FromString(reply.messages[0]).title == "chunked"


@pytest.mark.parametrize("content_type", [BINARY, TEXT])
def test_error_travels_in_the_trailer_frame_with_rich_details(
    server: ServerProcess, content_type: str
) -> None:
    _, reply = call(server.http_url, "CreateTask", frame(pb.CreateTaskRequest(title="   ")), content_type)
    assert reply.messages == []
    assert reply.code == code_pb2.INVALID_ARGUMENT
    status = reply.status()
    assert status.code == code_pb2.INVALID_ARGUMENT and status.message == reply.message
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["title"]


def test_grpc_message_is_percent_encoded_header_text(server: ServerProcess) -> None:
    missing = "0190f1c2-0000-7000-8000-00000000ü%"
    _, reply = call(server.http_url, "GetTask", frame(pb.GetTaskRequest(id=missing)))
    assert reply.code in (code_pb2.NOT_FOUND, code_pb2.INVALID_ARGUMENT)
    raw = reply.trailers["grpc-message"]
    assert raw.isascii() and "%25" in raw and "%C3%BC" in raw
    assert "ü%" in reply.message


def test_not_found_maps_to_grpc_status_5(server: ServerProcess) -> None:
    _, reply = call(
        server.http_url, "GetTask", frame(pb.GetTaskRequest(id="0190f1c2-0000-7000-8000-000000000000"))
    )
    assert reply.code == code_pb2.NOT_FOUND
    assert "not found" in reply.message


def test_malformed_request_is_invalid_argument_without_internals(server: ServerProcess) -> None:
    _, reply = call(server.http_url, "CreateTask", b"\x00\x00\x00\x00\x05\xff\xff\xff\xff\xff")
    assert reply.code == code_pb2.INVALID_ARGUMENT
    _, truncated = call(server.http_url, "CreateTask", b"\x00\x00\x00\x00\x09abc")
    assert truncated.code == code_pb2.INVALID_ARGUMENT
    assert "Traceback" not in truncated.message and "struct" not in truncated.message


def test_unknown_method_is_unimplemented(server: ServerProcess) -> None:
    _, reply = call(server.http_url, "Nope", frame(pb.GetTaskRequest(id="x")))
    assert reply.code == code_pb2.UNIMPLEMENTED


def test_other_content_types_and_methods_are_refused(server: ServerProcess) -> None:
    """JSON and GET at these paths are the Connect protocol (tests/test_connect.py); anything else
    that is not gRPC-Web is refused."""
    url = f"{server.http_url}/taskservice.TaskService/GetTask"
    assert httpx.post(url, content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
    assert httpx.put(url, content=b"{}", headers={"content-type": BINARY}).status_code == 405
    assert httpx.put(url, content=b"{}", headers={"content-type": "application/json"}).status_code == 405


def test_unary_call_works_over_h2c(server: ServerProcess, tag: str) -> None:
    with httpx.Client(http1=False, http2=True) as client:
        answer = client.post(
            f"{server.http_url}/taskservice.TaskService/CreateTask",
            content=frame(pb.CreateTaskRequest(title="over h2c", labels=[tag])),
            headers={"content-type": BINARY},
        )
    assert answer.http_version == "HTTP/2"
    reply = Reply(answer.content)
    assert reply.code == 0 and pb.Task.FromString(reply.messages[0]).title == "over h2c"


def _watch_frames(
    base_url: str, request: pb.WatchTasksRequest, content_type: str, want: int, **headers: str
) -> Iterator[bytes]:
    """Stream a WatchTasks call; yields the decoded response bytes as they arrive."""
    text = content_type.startswith("application/grpc-web-text")
    body = frame(request)
    with httpx.stream(
        "POST",
        f"{base_url}/taskservice.TaskService/WatchTasks",
        content=base64.b64encode(body) if text else body,
        headers={"content-type": content_type, **headers},
        timeout=10,
    ) as answer:
        assert answer.status_code == 200
        pending = b""
        for chunk in answer.iter_bytes():
            if text:
                pending += chunk
                whole = len(pending) - len(pending) % 4
                chunk, pending = b64decode_chunks(pending[:whole]), pending[whole:]
            yield chunk


@pytest.mark.parametrize("content_type", [BINARY, TEXT])
def test_watch_streams_live_events_in_both_modes(server: ServerProcess, tag: str, content_type: str) -> None:
    stub = server.stub()
    first = stub.CreateTask(pb.CreateTaskRequest(title="already there", labels=[tag]))
    request = pb.WatchTasksRequest(labels=[tag], include_initial=True)
    received: list[pb.TaskEvent] = []
    buffer = b""
    created_live = threading.Event()

    def create_later() -> None:
        time.sleep(0.3)
        stub.CreateTask(pb.CreateTaskRequest(title="arrives live", labels=[tag]))
        created_live.set()

    threading.Thread(target=create_later, daemon=True).start()
    for chunk in _watch_frames(server.http_url, request, content_type, want=2):
        buffer += chunk
        while len(buffer) >= 5:
            flag, length = struct.unpack_from(">BI", buffer)
            if len(buffer) < 5 + length:
                break
            assert flag == 0, "a watch must not end while events flow"
            received.append(pb.TaskEvent.FromString(buffer[5 : 5 + length]))
            buffer = buffer[5 + length :]
        if len(received) >= 2:
            break
    assert created_live.wait(5)
    assert [e.task.title for e in received] == ["already there", "arrives live"]
    assert received[0].task.id == first.id
    assert received[1].event_type == pb.EVENT_TYPE_CREATED
    assert received[1].sequence > received[0].sequence


def test_watch_honours_grpc_timeout(server: ServerProcess, tag: str) -> None:
    started = time.monotonic()
    _, reply = call(
        server.http_url, "WatchTasks", frame(pb.WatchTasksRequest(labels=[tag])), **{"grpc-timeout": "300m"}
    )
    assert reply.code == code_pb2.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5


def test_watch_resumes_after_a_sequence(server: ServerProcess, tag: str) -> None:
    stub = server.stub()
    a = stub.CreateTask(pb.CreateTaskRequest(title="a", labels=[tag]))
    stub.UpdateTask(pb.UpdateTaskRequest(id=a.id, title="a2"))
    stream = stub.WatchTasks(pb.WatchTasksRequest(labels=[tag], include_initial=True), timeout=5)
    cursor = next(stream).sequence  # the snapshot's sequence covers the create and the update
    stream.cancel()
    stub.UpdateTask(pb.UpdateTaskRequest(id=a.id, title="a3"))
    _, reply = call(
        server.http_url,
        "WatchTasks",
        frame(pb.WatchTasksRequest(labels=[tag], after_sequence=cursor)),
        **{"grpc-timeout": "500m"},
    )
    titles = [pb.TaskEvent.FromString(m).task.title for m in reply.messages]
    assert titles == ["a3"]
    assert reply.code == code_pb2.DEADLINE_EXCEEDED


def test_client_stream_in_one_body_bulk_creates(server: ServerProcess, tag: str) -> None:
    body = frame(pb.CreateTaskRequest(title="one", labels=[tag])) + frame(pb.CreateTaskRequest(title=""))
    _, reply = call(server.http_url, "BulkCreateTasks", body)
    assert reply.code == 0
    response = pb.BulkCreateResponse.FromString(reply.messages[0])
    assert response.success_count == 1 and [e.index for e in response.errors] == [1]


def test_malformed_command_is_answered_and_the_process_stream_goes_on(
    server: ServerProcess, tag: str
) -> None:
    commands = [
        frame(pb.TaskCommand(command_id="a", create=pb.CreateTaskRequest(title="before", labels=[tag]))),
        frame(b"\xff\xff"),
        frame(pb.TaskCommand(command_id="c", create=pb.CreateTaskRequest(title="after", labels=[tag]))),
    ]
    _, reply = call(server.http_url, "ProcessTaskStream", b"".join(commands))
    assert reply.code == code_pb2.OK, reply.message
    results = [pb.TaskResult.FromString(message) for message in reply.messages]
    assert [(r.command_id, r.success, r.code) for r in results] == [
        ("a", True, 0),
        ("", False, code_pb2.INVALID_ARGUMENT),
        ("c", True, 0),
    ]


def test_a_request_cut_off_mid_body_is_not_executed(server: ServerProcess, tag: str) -> None:
    """content-length 1000, one complete CreateTask frame, then the socket closes: a disconnect is
    not the end of a body, so nothing is created."""
    body = frame(pb.CreateTaskRequest(title="cut off", labels=[tag]))
    head = (
        "POST /taskservice.TaskService/CreateTask HTTP/1.1\r\n"
        f"host: 127.0.0.1:{server.http_port}\r\n"
        f"content-type: {BINARY}\r\ncontent-length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        time.sleep(0.3)  # the server has the frame and is waiting for the rest of the body
    time.sleep(0.5)
    listed = pb.ListTasksResponse.FromString(
        call(server.http_url, "ListTasks", frame(pb.ListTasksRequest(labels=[tag])))[1].messages[0]
    )
    assert list(listed.tasks) == []
    _, whole = call(server.http_url, "CreateTask", body)  # the same frame, sent whole, is created
    assert whole.code == code_pb2.OK


# -- CORS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("cors"),
        "--cors-origin",
        ORIGIN,
        "--cors-origin",
        "https://a.example,https://b.example",
    ).start()
    yield proc
    proc.stop()


def _preflight(base_url: str, origin: str) -> httpx.Response:
    return httpx.options(
        f"{base_url}/taskservice.TaskService/CreateTask",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout",
        },
    )


def test_preflight_from_an_allowed_origin_is_answered(cors_server: ServerProcess) -> None:
    for origin in (ORIGIN, "https://b.example"):
        answer = _preflight(cors_server.http_url, origin)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == origin
        assert "POST" in answer.headers["access-control-allow-methods"]
        allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"} <= allowed


def test_preflight_from_another_origin_is_refused(cors_server: ServerProcess) -> None:
    answer = _preflight(cors_server.http_url, "https://evil.example")
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers


def test_cross_origin_call_exposes_the_grpc_headers(cors_server: ServerProcess, tag: str) -> None:
    answer, reply = call(
        cors_server.http_url,
        "CreateTask",
        frame(pb.CreateTaskRequest(title="x", labels=[tag])),
        origin=ORIGIN,
    )
    assert reply.code == 0
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= exposed


def test_no_origin_is_allowed_by_default(server: ServerProcess) -> None:
    answer = _preflight(server.http_url, ORIGIN)
    assert "access-control-allow-origin" not in answer.headers
    posted, _ = call(server.http_url, "GetTask", frame(pb.GetTaskRequest(id="x")), origin=ORIGIN)
    assert "access-control-allow-origin" not in posted.headers


# -- lifecycle -----------------------------------------------------------------------------------


def test_open_watch_ends_with_unavailable_on_shutdown(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    connected = threading.Event()
    result: dict[str, Reply] = {}

    def watch() -> None:
        with httpx.stream(
            "POST",
            f"{fresh_server.http_url}/taskservice.TaskService/WatchTasks",
            content=frame(pb.WatchTasksRequest()),
            headers={"content-type": BINARY},
            timeout=20,
        ) as answer:
            connected.set()  # headers came: the watch is open on the server
            result["reply"] = Reply(answer.read())

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert connected.wait(10)
    assert fresh_server.stop() == 0
    thread.join(10)
    assert result["reply"].code == code_pb2.UNAVAILABLE
    assert "shutting down" in result["reply"].message


def test_board_is_served_at_root_or_explains_how_to_build_it(tmp_path: Path) -> None:
    empty = tmp_path / "no-board"
    empty.mkdir()
    proc = ServerProcess(tmp_path / "data", "--web-dir", str(empty)).start()
    try:
        answer = httpx.get(proc.http_url + "/")
        assert answer.status_code == 404 and "make install" in answer.text
        built = tmp_path / "board"
        built.mkdir()
        (built / "index.html").write_text("<!doctype html><title>board</title>")
        proc.stop()
        proc.args = ["--web-dir", str(built)]
        proc.start()
        answer = httpx.get(proc.http_url + "/")
        assert answer.status_code == 200 and "<title>board</title>" in answer.text
    finally:
        proc.kill()


def test_idle_watch_sends_its_headers_at_once(server: ServerProcess, tag: str) -> None:
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{server.http_url}/taskservice.TaskService/WatchTasks",
        content=frame(pb.WatchTasksRequest(labels=[tag])),
        headers={"content-type": BINARY},
        timeout=5,
    ) as answer:
        # No event will come: the headers alone tell a browser the watch is connected.
        assert answer.status_code == 200
        assert answer.headers["content-type"] == BINARY
        assert time.monotonic() - started < 2


# -- admission: the same authentication, access rules, rate limits and stream quotas -------------


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    data = tmp_path_factory.mktemp("jwt")
    secret = "s" * 48
    (data / "secret").write_text(secret)
    args = [
        "--auth",
        "jwt",
        "--jwt-secret-file",
        str(data / "secret"),
        "--rate-limit",
        "5",
        "--rate-burst",
        "5",
    ]
    proc = ServerProcess(data / "server", *args, "--max-streams-per-user", "1").start()
    yield proc, secret
    proc.stop()


def bearer(secret: str, user: str) -> dict[str, str]:
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, secret, algorithm="HS256")
    return {"authorization": f"Bearer {token}"}


def test_calls_without_a_valid_token_are_unauthenticated(jwt_server: tuple[ServerProcess, str]) -> None:
    server, _ = jwt_server
    _, reply = call(server.http_url, "ListTasks", frame(pb.ListTasksRequest()))
    assert reply.code == code_pb2.UNAUTHENTICATED
    _, forged = call(
        server.http_url, "ListTasks", frame(pb.ListTasksRequest()), **bearer("x" * 48, "mallory")
    )
    assert forged.code == code_pb2.UNAUTHENTICATED


def test_access_rules_are_the_grpc_ports(jwt_server: tuple[ServerProcess, str]) -> None:
    server, secret = jwt_server
    _, created = call(
        server.http_url, "CreateTask", frame(pb.CreateTaskRequest(title="alice's")), **bearer(secret, "alice")
    )
    task = pb.Task.FromString(created.messages[0])
    assert task.created_by == "alice"
    _, seen_by_bob = call(
        server.http_url, "GetTask", frame(pb.GetTaskRequest(id=task.id)), **bearer(secret, "bob")
    )
    assert seen_by_bob.code == code_pb2.NOT_FOUND


def test_rate_limit_refuses_with_retry_info(jwt_server: tuple[ServerProcess, str]) -> None:
    server, secret = jwt_server
    headers = bearer(secret, "hasty")
    with concurrent.futures.ThreadPoolExecutor(10) as pool:  # a burst far above 2/s, even under load
        codes = list(
            pool.map(
                lambda _: call(server.http_url, "ListTasks", frame(pb.ListTasksRequest()), **headers)[1],
                range(20),
            )
        )
    refused = [r for r in codes if r.code == code_pb2.RESOURCE_EXHAUSTED]
    assert refused, [r.code for r in codes]
    retry = error_details_pb2.RetryInfo()
    assert refused[0].status().details[0].Unpack(retry)


def test_streams_per_user_are_bounded(jwt_server: tuple[ServerProcess, str]) -> None:
    server, secret = jwt_server
    with httpx.stream(
        "POST",
        f"{server.http_url}/taskservice.TaskService/WatchTasks",
        content=frame(pb.WatchTasksRequest()),
        headers={"content-type": BINARY, **bearer(secret, "watcher")},
        timeout=10,
    ) as first:
        assert first.status_code == 200  # open: it holds the user's only stream slot
        _, second = call(
            server.http_url, "WatchTasks", frame(pb.WatchTasksRequest()), **bearer(secret, "watcher")
        )
        assert second.code == code_pb2.RESOURCE_EXHAUSTED
        assert "streams may be open" in second.message
    # Closing the first stream gives the slot back.
    deadline = time.monotonic() + 5
    while True:
        _, again = call(
            server.http_url,
            "WatchTasks",
            frame(pb.WatchTasksRequest()),
            **bearer(secret, "watcher"),
            **{"grpc-timeout": "200m"},
        )
        if again.code == code_pb2.DEADLINE_EXCEEDED or time.monotonic() > deadline:
            break
        time.sleep(0.6)  # within the server's 2 calls per second
    assert again.code == code_pb2.DEADLINE_EXCEEDED


def test_routes_added_after_the_board_still_win(tmp_path: Path) -> None:
    """The board answers only what no route claims (so /metrics, the API and any later route win)."""
    import asyncio

    from grpc_health.v1 import health
    from starlette.responses import PlainTextResponse

    from taskservice.server.readiness import Readiness
    from taskservice.store import open_store
    from taskservice.transport import http

    board = tmp_path / "board"
    board.mkdir()
    (board / "index.html").write_text("<title>board</title>")

    async def scenario() -> None:
        draining = asyncio.Event()
        store = open_store("memory://", str(tmp_path))
        readiness = Readiness(store, health.aio.HealthServicer(), draining, ("",), interval=5.0)
        app = http.build_app(draining, readiness, web_dir=board)
        app.add_route("/added-later", lambda _: PlainTextResponse("added later"))
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://board"
            ) as client:
                assert (await client.get("/added-later")).text == "added later"
                assert (await client.get("/metrics")).text.startswith("# HELP")
                assert "<title>board</title>" in (await client.get("/")).text
                assert (await client.get("/healthz")).json() == {"status": "ok"}
                assert (await client.get("/nope")).status_code == 404
        finally:
            await store.close()  # a memory:// store's temporary directory goes with it

    asyncio.run(scenario())


# -- observation: the same metrics series, access log and request ids as the gRPC port -------------


def _handled(metrics_text: str, method: str, code: str) -> float:
    for line in metrics_text.splitlines():
        labels = f'grpc_method="{method}"' in line and f'grpc_code="{code}"' in line
        if line.startswith("grpc_server_handled_total{") and labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_grpc_web_calls_are_counted_logged_and_given_a_request_id(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    before = httpx.get(fresh_server.http_url + "/metrics").text
    answer, reply = call(
        fresh_server.http_url,
        "GetTask",
        frame(pb.GetTaskRequest(id="0190f1c2-0000-7000-8000-000000000000")),
        **{"x-request-id": "web-req-1"},
    )
    assert reply.code == code_pb2.NOT_FOUND
    assert answer.headers["x-request-id"] == "web-req-1"
    after = httpx.get(fresh_server.http_url + "/metrics").text
    assert _handled(after, "GetTask", "NotFound") == _handled(before, "GetTask", "NotFound") + 1
    fresh_server.stop()
    access = [line for line in fresh_server.log().splitlines() if "web-req-1" in line]
    assert access and "GetTask" in access[0] and "NotFound" in access[0]
