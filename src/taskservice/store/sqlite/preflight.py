"""Checks before the SQLite store opens its file, each failing with one line an operator can act on.

- The folder is created 0700 and a new database file 0600 (SQLite gives its -wal and -shm files
  the database file's mode): the file holds every task and the page-token key.
- A zero-byte database next to a `jwt-secret` means a server ran here and its database was lost or
  truncated: starting empty would silently drop every task, so the server refuses unless told to.
- The file and its folder must be writable: a read-only volume is named as such.
- `PRAGMA quick_check`, bounded in time, finds a damaged or foreign file before any call does.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import structlog

from taskservice.store.faults import StoreUnusable

log = structlog.get_logger(__name__)

QUICK_CHECK_SECONDS = 10.0
SECRET_NEXT_TO_IT = "jwt-secret"  # what `taskservice serve` leaves in its data dir (access/auth.py)
_RESTORE = "restore it from a backup (see docs/operations.md)"


def check(path: str, *, allow_empty: bool = False, quick_check_s: float = QUICK_CHECK_SECONDS) -> None:
    """Make `path` ready to open, or raise StoreUnusable saying what is wrong and what to do."""
    file = Path(path)
    folder = file.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise StoreUnusable(f"cannot create the data folder {folder}: {error.strerror}") from None
    _check_writable_folder(folder)
    if not file.exists():
        _create_private(file)
        return
    if file.stat().st_size == 0:
        _check_empty(file, allow_empty)
        return
    try:
        os.close(os.open(file, os.O_RDWR))
    except OSError as error:
        raise StoreUnusable(
            f"cannot write {file}: {error.strerror}; the server needs its database file writable"
        ) from None
    _quick_check(file, quick_check_s)


def _check_writable_folder(folder: Path) -> None:
    """SQLite creates its -wal and -shm files next to the database: the folder must take new files."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
    except OSError as error:
        raise StoreUnusable(
            f"cannot write in {folder}: {error.strerror}; the server needs its data folder writable "
            "(is the volume mounted read-only, or owned by another user?)"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _create_private(file: Path) -> None:
    try:
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process created it meanwhile
    except OSError as error:
        raise StoreUnusable(f"cannot create {file}: {error.strerror}") from None


def _check_empty(file: Path, allow_empty: bool) -> None:
    if not (file.parent / SECRET_NEXT_TO_IT).exists():
        return  # nothing says a server ran here before: an empty database is a new one
    if allow_empty:
        log.warning("store.empty_database_allowed", path=str(file))
        return
    raise StoreUnusable(
        f"{file} is empty (0 bytes), but a server ran in {file.parent} before (its {SECRET_NEXT_TO_IT} "
        f"is there): the database was probably truncated or lost; {_RESTORE}, or start with "
        "--allow-empty-store to begin again with no tasks"
    )


def _quick_check(file: Path, seconds: float) -> None:
    """Run SQLite's quick_check for at most `seconds`; a check cut short is logged, not fatal."""
    deadline = time.monotonic() + seconds
    try:
        conn = sqlite3.connect(file.absolute().as_uri() + "?mode=rw", uri=True, isolation_level=None)
    except sqlite3.Error as error:
        raise StoreUnusable(f"cannot open {file}: {error}") from None
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.OperationalError as error:
        if (error.sqlite_errorcode & 0xFF) == sqlite3.SQLITE_INTERRUPT:
            log.warning("store.quick_check_cut_short", path=str(file), seconds=seconds)
            return
        raise StoreUnusable(f"{file} cannot be read ({error}); {_RESTORE}") from None
    except sqlite3.DatabaseError as error:
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
        what = "is not a SQLite database" if code == sqlite3.SQLITE_NOTADB else "is damaged"
        raise StoreUnusable(f"{file} {what} ({error}); {_RESTORE}") from None
    finally:
        conn.close()
    problems = [
        line.strip()
        for row in rows
        for line in str(row[0]).splitlines()
        if line.strip() not in ("ok", "") and not line.startswith("*** in database")
    ]
    if problems:
        raise StoreUnusable(f"{file} is damaged (quick_check: {problems[0]}); {_RESTORE}")
