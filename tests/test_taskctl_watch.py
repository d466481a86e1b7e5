"""`taskctl watch` in a real process, across a real server restart."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from taskservice.api import task_service_pb2 as pb
from tests.servers import ServerProcess

TASKCTL = str(Path(sys.executable).parent / "taskctl")


class Lines:
    """Lines of a pipe, read on a thread so a test can wait with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def take(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        return [json.loads(self._queue.get(timeout=timeout)) for _ in range(count)]


def test_watch_resumes_across_a_server_restart_without_gaps_or_repeats(
    fresh_server: ServerProcess, tag: str
) -> None:
    server = fresh_server.start()
    before = server.stub().CreateTask(pb.CreateTaskRequest(title="before", labels=[tag]))
    env = {**os.environ, "TASKCTL_SERVER": server.grpc_addr, "TASKCTL_CONFIG": "/nonexistent"}
    watcher = subprocess.Popen(
        [TASKCTL, "-o", "json", "watch", "--label", tag, "--initial"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = Lines(watcher.stdout)  # type: ignore[arg-type]
        assert out.take(1)[0]["task"]["title"] == "before"  # the initial snapshot
        server.stub().UpdateTask(pb.UpdateTaskRequest(id=before.id, status=pb.TASK_STATUS_IN_PROGRESS))
        (updated,) = out.take(1)
        assert updated["eventType"] == "EVENT_TYPE_UPDATED"

        server.restart()  # the watch ends with UNAVAILABLE; these writes happen while it reconnects
        stub = server.stub()
        for i in range(3):
            stub.CreateTask(pb.CreateTaskRequest(title=f"after {i}", labels=[tag]))
        stub.CreateTask(pb.CreateTaskRequest(title="not watched", labels=["other"]))
        stub.DeleteTask(pb.DeleteTaskRequest(id=before.id))

        events = out.take(4)
        assert [(e["eventType"], e["task"]["title"]) for e in events] == [
            ("EVENT_TYPE_CREATED", "after 0"),
            ("EVENT_TYPE_CREATED", "after 1"),
            ("EVENT_TYPE_CREATED", "after 2"),
            ("EVENT_TYPE_DELETED", "before"),
        ]
        sequences = [int(e["sequence"]) for e in [updated, *events]]
        assert sequences == sorted(set(sequences))  # strictly increasing: nothing printed twice
        stub.CreateTask(pb.CreateTaskRequest(title="last", labels=[tag]))
        assert out.take(1)[0]["task"]["title"] == "last"  # and nothing extra came in between
    finally:
        watcher.terminate()
        watcher.wait(10)
    assert f"resuming after sequence {updated['sequence']}" in watcher.stderr.read()  # type: ignore[union-attr]
    watcher.stderr.close()  # type: ignore[union-attr]
    watcher.stdout.close()  # type: ignore[union-attr]
