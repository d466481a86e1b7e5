"""The SQLite store's checkpointer thread, and naming threads in the OS."""

from __future__ import annotations

import contextlib
import ctypes
import sqlite3
import sys
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

_PR_SET_NAME = 15


class Checkpointer:
    """Copies committed pages from the WAL back into the database file, from its own thread and
    connection. Left to the writer (SQLite's automatic checkpoint every 1,000 pages), that copy and
    the database file's fsync landed inside a commit several times a second under load, and every
    write in that batch waited for it. A PASSIVE checkpoint never blocks the writer; the writer
    still checkpoints by itself should the WAL ever pass `WAL_BACKSTOP_PAGES`."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval: float) -> None:
        self._connect = connect
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        name_thread("sqlite-ckpt")
        conn = self._connect()
        try:
            while not self._stopping.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's own checkpoint remains as a backstop
                    log.warning("store.checkpoint_failed", error=str(exc))
        finally:
            conn.close()


def name_thread(name: str) -> None:
    """Give the calling thread `name` in the OS (15 bytes at most), as `top -H`, `ps -L` and
    /proc/PID/task/*/comm show it; Python's own thread names stay inside Python."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
