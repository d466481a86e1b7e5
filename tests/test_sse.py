"""WatchTasks as Server-Sent Events: `GET /v1/tasks:watch`, ids are sequences, Last-Event-ID resumes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ServerProcess


class EventReader:
    """Reads one SSE response in a thread: events (id, event name, data) and comment lines."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []
        self.comments: list[str] = []
        self.status = 0
        self.headers: dict[str, str] = {}
        self.ended = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=60))
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as answer:
                self.status, self.headers = answer.status_code, dict(answer.headers)
                event_id, name, data = "", "message", ""
                for line in answer.iter_lines():
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif not line and data:
                        self.events.append((event_id, name, json.loads(data)))
                        event_id, name, data = "", "message", ""
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, str, dict[str, object]]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.events) >= count, self.events
        return self.events

    def close(self) -> None:
        self._client.close()
        self._thread.join(5)


@pytest.fixture
def reader() -> Iterator[list[EventReader]]:
    readers: list[EventReader] = []
    yield readers
    for r in readers:
        r.close()


def test_events_carry_their_sequence_as_id_and_heartbeats_flow(
    tmp_path: Path, reader: list[EventReader]
) -> None:
    proc = ServerProcess.jwt(tmp_path / "sse", "--sse-heartbeat", "0.3").start()
    try:
        token = proc.token("alice")
        api = httpx.Client(base_url=proc.http_url, headers={"authorization": f"Bearer {token}"}, timeout=10)
        watch = EventReader(f"{proc.http_url}/v1/tasks:watch?labels=sse&access_token={token}")
        reader.append(watch)
        time.sleep(0.5)
        created = api.post("/v1/tasks", json={"title": "live", "labels": ["sse"]}).json()
        api.post("/v1/tasks", json={"title": "elsewhere", "labels": ["other"]})
        api.patch(f"/v1/tasks/{created['id']}", json={"status": "TASK_STATUS_DONE"})
        events = watch.wait_for(2)
        assert watch.status == 200 and watch.headers["content-type"].startswith("text/event-stream")
        (first_id, _, first), (second_id, _, second) = events[:2]
        assert first["eventType"] == "EVENT_TYPE_CREATED" and second["eventType"] == "EVENT_TYPE_UPDATED"
        assert first_id == first["sequence"] and second_id == second["sequence"]
        assert int(second_id) > int(first_id)
        time.sleep(0.8)
        assert ": keep-alive" in watch.comments
        api.close()
    finally:
        proc.stop()


def test_a_watch_is_refused_with_an_http_status(tmp_path: Path) -> None:
    proc = ServerProcess.jwt(tmp_path / "sse-refused").start()
    try:
        url = f"{proc.http_url}/v1/tasks:watch"
        assert httpx.get(url, timeout=10).status_code == 401
        token = proc.token("alice")
        bad = httpx.get(url, params={"access_token": token, "statuses": "NOPE"}, timeout=10)
        assert bad.status_code == 400 and bad.json()["code"] == 3
        ahead = httpx.get(
            url, params={"access_token": token}, headers={"last-event-id": "999999"}, timeout=10
        )
        assert ahead.status_code == 400 and ahead.json()["code"] == 11  # OUT_OF_RANGE
        assert (
            httpx.get(
                url, headers={"last-event-id": "x", "authorization": f"Bearer {token}"}, timeout=10
            ).status_code
            == 400
        )
    finally:
        proc.stop()


def test_last_event_id_resumes_across_a_server_restart(tmp_path: Path, reader: list[EventReader]) -> None:
    proc = ServerProcess.jwt(tmp_path / "sse-restart").start()
    token = proc.token("alice")
    headers = {"authorization": f"Bearer {token}"}
    try:
        watch = EventReader(f"{proc.http_url}/v1/tasks:watch?labels=resume", headers)
        reader.append(watch)
        time.sleep(0.5)
        first = httpx.post(
            f"{proc.http_url}/v1/tasks", json={"title": "before", "labels": ["resume"]}, headers=headers
        )
        ((last_id, _, _),) = watch.wait_for(1)
        proc.stop()
        assert watch.ended.wait(10), "the stream did not end at shutdown"
        # Events committed while no one watched are delivered on resume, in order, once each.
        proc.start()
        missed = [
            httpx.post(
                f"{proc.http_url}/v1/tasks",
                json={"title": f"while away {i}", "labels": ["resume"]},
                headers=headers,
            ).json()
            for i in range(3)
        ]
        resumed = EventReader(
            f"{proc.http_url}/v1/tasks:watch?labels=resume", {**headers, "last-event-id": last_id}
        )
        reader.append(resumed)
        events = resumed.wait_for(3)
        assert [e[2]["task"]["id"] for e in events] == [t["id"] for t in missed]  # type: ignore[index]
        assert first.json()["id"] not in [e[2]["task"]["id"] for e in events]  # type: ignore[index]
        # The query parameter works the same way.
        by_param = EventReader(
            f"{proc.http_url}/v1/tasks:watch?labels=resume&afterSequence={last_id}", headers
        )
        reader.append(by_param)
        assert [e[0] for e in by_param.wait_for(3)] == [e[0] for e in events]
    finally:
        proc.stop()


def test_an_event_stream_holds_one_of_the_users_stream_slots(
    tmp_path: Path, reader: list[EventReader]
) -> None:
    proc = ServerProcess.jwt(tmp_path / "sse-quota", "--max-streams-per-user", "1").start()
    try:
        token = proc.token("alice")
        url = f"{proc.http_url}/v1/tasks:watch?access_token={token}"
        first = EventReader(url)
        reader.append(first)
        time.sleep(0.8)
        assert first.status == 200
        second = httpx.get(url, timeout=10)
        assert second.status_code == 429 and second.json()["code"] == 8
        other_user = EventReader(f"{proc.http_url}/v1/tasks:watch?access_token={proc.token('bob')}")
        reader.append(other_user)
        time.sleep(0.8)
        assert other_user.status == 200
    finally:
        proc.stop()
