"""What a database failure means, by kind, and what the server must do about it.

A store names the kind of each failure from the database's own error code (SQLite's result code,
PostgreSQL's SQLSTATE class), never from a list of exception classes:

- **unavailable** (cannot connect, busy, disk full, read-only, I/O error): the client gets
  UNAVAILABLE with a sentence saying what is wrong, and may retry; nothing was stored.
- **constraint** (a uniqueness or foreign-key rule): the matching domain error.
- **corruption** (a damaged file, an internal database error): the client gets INTERNAL, and the
  server reports itself not ready until an operator restores the database and restarts it.

`StoreFaults` remembers what readiness must know about failures seen while serving: a damaged
database, and writes that fail (a full disk, a read-only volume) until one succeeds again.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass

from taskservice.domain.errors import AlreadyExists, DomainError, Internal, Unavailable


class Kind(enum.Enum):
    UNAVAILABLE = "unavailable"
    CONSTRAINT = "constraint"
    CORRUPTION = "corruption"
    OTHER = "other"  # a bug or an unexpected statement error: INTERNAL, the server stays ready


DAMAGED = (
    "the task store's database is damaged; the server is not ready until an operator restores it "
    "from a backup (see docs/operations.md)"
)

# SQLite primary result codes (the low byte of an extended code) and what a client is told.
_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY: "the task store is busy (another process holds its lock); retry",
    sqlite3.SQLITE_LOCKED: "the task store is busy (a table is locked); retry",
    sqlite3.SQLITE_FULL: "the task store's disk is full; nothing was stored; retry once space is freed",
    sqlite3.SQLITE_IOERR: "the task store could not read or write its file (I/O error); retry",
    sqlite3.SQLITE_READONLY: "the task store's file is read-only; nothing was stored",
    sqlite3.SQLITE_CANTOPEN: "the task store's file cannot be opened",
    sqlite3.SQLITE_NOMEM: "the task store ran out of memory; retry",
}
_SQLITE_CORRUPTION = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def sqlite_kind(error: sqlite3.Error) -> Kind:
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _SQLITE_UNAVAILABLE:
        return Kind.UNAVAILABLE
    if code in _SQLITE_CORRUPTION:
        return Kind.CORRUPTION
    if code == sqlite3.SQLITE_CONSTRAINT:
        return Kind.CONSTRAINT
    return Kind.OTHER


def sqlite_message(error: sqlite3.Error) -> str:
    """The sentence a client or an operator reads for a SQLite failure."""
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _SQLITE_CORRUPTION:
        return DAMAGED
    return _SQLITE_UNAVAILABLE.get(code, "the task store failed; retry")


def timed_out(seconds: float) -> Unavailable:
    """A database that did not answer in time (a partition, a stalled server): the client may retry;
    a change may or may not have been stored, as with any UNAVAILABLE from a write."""
    return Unavailable(f"the task store did not answer within {seconds:g} s; retry shortly")


@dataclass
class StoreFaults:
    """Failures seen while serving that decide readiness (see `TaskStore.ping`)."""

    damaged: str | None = None  # set once: a restart after a restore clears it
    write_failure: str | None = None  # cleared by the next write that succeeds

    def error(self, kind: Kind, message: str, *, writing: bool = False) -> DomainError:
        """The domain error for a failure of `kind`, noting what readiness must know."""
        if kind is Kind.CORRUPTION:
            self.damaged = message
            return Internal(message)
        if kind is Kind.UNAVAILABLE:
            if writing:
                self.write_failure = message
            return Unavailable(message)
        if kind is Kind.CONSTRAINT:
            return AlreadyExists("the change conflicts with a stored one; re-read and retry")
        return Internal("internal error")

    def sqlite(self, error: sqlite3.Error, *, writing: bool = False) -> DomainError:
        return self.error(sqlite_kind(error), sqlite_message(error), writing=writing)

    def wrote(self) -> None:
        self.write_failure = None


class StoreUnusable(Exception):
    """The store cannot be opened as it is (a damaged, empty or read-only file); the message says
    what is wrong and what to do, in one line, for the operator starting the server."""
