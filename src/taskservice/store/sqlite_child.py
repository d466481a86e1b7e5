"""The SQLite writer's helper process: inserts and commits the new tasks the writer hands it.

The writer keeps the order of every write; for a batch of many plain creates (a bulk chunk) its
worker thread sends the encoded tasks here and waits, without the GIL, for the commit. The inserts'
Python (rows, statements) and SQLite's b-tree work then run on this process's own interpreter
instead of taking the server's GIL from its event loop after every statement.

Frames both ways are a 4-byte big-endian length and a `marshal` payload. Request: (occurred_us,
[encoded Task, ...]). Answer: ("ok", first event sequence) or ("error", message). The process ends
when its stdin closes (the server stopped or died).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import BinaryIO

from taskservice.api import task_service_pb2 as pb
from taskservice.store.sqlite import _connect, _insert_created, _read_frame, _write_frame


def serve(path: str, durable: bool, requests: BinaryIO, answers: BinaryIO) -> None:
    conn = _connect(path, durable=durable)
    while (request := _read_frame(requests)) is not None:
        occurred, bodies = request
        try:
            conn.execute("BEGIN IMMEDIATE")
            events = _insert_created(conn, [pb.Task.FromString(body) for body in bodies], occurred)
            conn.execute("COMMIT")
            answer: tuple[str, int | str] = ("ok", events[0].sequence if events else 0)
        except (sqlite3.Error, ValueError) as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            answer = ("error", f"{type(error).__name__}: {error}")
        _write_frame(answers, answer)
    conn.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2] == "1", os.fdopen(0, "rb", buffering=0), os.fdopen(1, "wb", buffering=0))
