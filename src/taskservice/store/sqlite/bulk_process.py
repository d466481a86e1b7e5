"""The SQLite writer's bulk process: inserts and commits the new tasks the writer hands it.

The writer keeps the order of every write; for a batch of many plain creates (a bulk chunk) its
worker thread sends the encoded tasks here and waits, without the GIL, for the commit. The inserts'
Python (rows, statements) and SQLite's b-tree work then run on this process's own interpreter
instead of taking the server's GIL from its event loop after every statement.

Frames both ways are a 4-byte big-endian length and a `marshal` payload. Request: (occurred_us,
[encoded Task, ...]). Answer: ("ok", first event sequence) or ("error", message). The process ends
when its stdin closes (the server stopped or died).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import sqlite3
import struct
import subprocess
import sys
from typing import IO, Any, BinaryIO

import structlog

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.values import now_us
from taskservice.store.base import StoredEvent
from taskservice.store.sqlite.statements import connect, insert_created

log = structlog.get_logger(__name__)


class BulkProcess:
    """The helper process (this module, run as a program) that commits a big batch's plain creates for the
    writer: its worker thread sends the encoded tasks and waits for the commit without holding the
    GIL, so the inserts do not take the GIL back from the event loop after every statement."""

    def __init__(self, path: str, durable: bool) -> None:
        self._command = [
            sys.executable,
            "-c",
            # not `-m`: the package imports this module first, and runpy warns about running it twice
            "import sys; from taskservice.store.sqlite.bulk_process import main; main(sys.argv[1:])",
            path,
            "1" if durable else "0",
        ]
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The running process's id, or None before its first batch and after it was lost."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        self._proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()  # the answer pipe's read end, left open by wait()

    def insert(self, tasks: list[pb.Task]) -> list[StoredEvent] | None:
        """The tasks' CREATED events once committed, or None when the helper could not commit them
        (the writer then inserts them itself, and a failing one fails alone as ever)."""
        occurred = now_us()
        try:
            if self._proc is None:
                self.start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            write_frame(proc.stdin, (occurred, [task.SerializeToString() for task in tasks]))
            answer = read_frame(proc.stdout)
        except (OSError, ValueError) as error:
            answer, reason = None, str(error)
        else:
            reason = "it exited"
        if answer is None:
            log.warning("store.helper_lost", error=reason)
            self.stop()
            return None
        status, value = answer
        if status != "ok":
            log.warning("store.helper_failed", error=value)
            return None
        return [
            StoredEvent(value + i, pb.EVENT_TYPE_CREATED, task, None, occurred, task.created_by)
            for i, task in enumerate(tasks)
        ]


def write_frame(stream: IO[bytes], value: Any) -> None:
    """`value` to `stream` as one frame: a 4-byte big-endian length, then its `marshal` encoding."""
    payload = marshal.dumps(value)
    stream.write(struct.pack(">I", len(payload)) + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """One length-prefixed marshal frame from `stream`, or None at its end."""
    header = _read_exactly(stream, 4)
    if header is None:
        return None
    payload = _read_exactly(stream, struct.unpack(">I", header)[0])
    return None if payload is None else marshal.loads(payload)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(path: str, durable: bool, requests: BinaryIO, answers: BinaryIO) -> None:
    conn = connect(path, durable=durable)
    while (request := read_frame(requests)) is not None:
        occurred, bodies = request
        try:
            conn.execute("BEGIN IMMEDIATE")
            events = insert_created(conn, [pb.Task.FromString(body) for body in bodies], occurred)
            conn.execute("COMMIT")
            answer: tuple[str, int | str] = ("ok", events[0].sequence if events else 0)
        except (sqlite3.Error, ValueError) as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            answer = ("error", f"{type(error).__name__}: {error}")
        write_frame(answers, answer)
    conn.close()


def main(argv: list[str]) -> None:
    """The bulk process's entry point: `PATH DURABLE(1|0)`, frames on stdin and stdout."""
    serve(argv[0], argv[1] == "1", os.fdopen(0, "rb", buffering=0), os.fdopen(1, "wb", buffering=0))
