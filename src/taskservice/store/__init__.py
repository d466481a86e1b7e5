"""Stores: where tasks and their event log live. `open_store` picks one from a URL."""

from __future__ import annotations

import re
from pathlib import Path

from taskservice.store.base import TaskStore


def open_store(
    url: str, data_dir: str, *, allow_empty: bool = False, timeout: float | None = None
) -> TaskStore:
    """`sqlite:///PATH` (relative paths are under data_dir), `memory://`, or `postgresql://…`.
    `allow_empty`: open a zero-byte SQLite file where a server ran before (see sqlite/preflight.py).
    `timeout`: how long a PostgreSQL operation may wait on the database (its default when None)."""
    from taskservice.store.sqlite import SQLiteStore

    if url in ("", "sqlite", "sqlite://"):
        return SQLiteStore(str(Path(data_dir) / "tasks.db"), allow_empty=allow_empty)
    if url.startswith("memory:"):
        return SQLiteStore(None, durable=False)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if url.startswith("sqlite:////"):
            path = Path("/" + str(path).lstrip("/"))
        elif not path.is_absolute():
            path = Path(data_dir) / path
        return SQLiteStore(str(path), allow_empty=allow_empty)
    if url.startswith(("postgresql://", "postgres://")):
        from taskservice.store.postgres import PostgresStore

        return PostgresStore(url) if timeout is None else PostgresStore(url, timeout=timeout)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH, memory:// or postgresql://…")


def redact(url: str) -> str:
    """The store URL with any password replaced, for logs."""
    return re.sub(r"^([a-z]+://[^:/@]*):[^@/]*@", r"\1:***@", url)
