"""The SQLite writer's helper process: inserts and commits the new tasks the writer thread hands it.

The writer thread keeps the order of every write; for a batch's plain creates it sends the encoded
tasks here and waits, without the GIL, for the commit. The inserts' Python (rows, statements) and
SQLite's b-tree work then run on this process's own interpreter instead of taking the server's GIL
from its event loop after every statement.

Frames both ways are a 4-byte big-endian length and a `marshal` payload. Request: (occurred_us,
[encoded Task, ...]). Answer: ("ok", first event sequence) or ("error", message). The process ends
when its stdin closes (the server stopped or died).
"""

from __future__ import annotations

import marshal
import os
import sqlite3
import struct
import sys
from typing import BinaryIO

from taskservice.api import task_service_pb2 as pb
from taskservice.store.sqlite import _connect, _insert_created, _read_exactly


def serve(path: str, durable: bool, requests: BinaryIO, answers: BinaryIO) -> None:
    conn = _connect(path, durable=durable)
    while True:
        header = _read_exactly(requests, 4)
        if header is None:
            break
        payload = _read_exactly(requests, struct.unpack(">I", header)[0])
        if payload is None:
            break
        occurred, bodies = marshal.loads(payload)
        try:
            conn.execute("BEGIN IMMEDIATE")
            events = _insert_created(conn, [pb.Task.FromString(body) for body in bodies], occurred)
            conn.execute("COMMIT")
            answer: tuple[str, int | str] = ("ok", events[0].sequence if events else 0)
        except (sqlite3.Error, ValueError) as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            answer = ("error", f"{type(error).__name__}: {error}")
        data = marshal.dumps(answer)
        answers.write(struct.pack(">I", len(data)) + data)
        answers.flush()
    conn.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2] == "1", os.fdopen(0, "rb", buffering=0), os.fdopen(1, "wb", buffering=0))
