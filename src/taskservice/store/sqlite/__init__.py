"""The embedded store: SQLite in WAL mode with group commit (see store.py)."""

from taskservice.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
