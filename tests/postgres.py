"""Throw-away PostgreSQL databases for tests, on the server at TASKSERVICE_TEST_POSTGRES.

When PostgreSQL is not reachable the tests that need it skip with the reason, unless
TASKSERVICE_REQUIRE_POSTGRES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import asyncpg
import pytest

ADMIN_URL = os.environ.get("TASKSERVICE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def admin(sql: str) -> None:
    """Run one statement as the test server's administrator (ALTER DATABASE, pg_terminate_backend)."""
    _admin(sql)


def query(url: str, sql: str, *args: Any) -> list[Any]:
    """Run one query on `url` and return its rows (for checks from outside the server)."""

    async def run() -> list[Any]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def require_postgres() -> None:
    """Skip (or fail, when required) if the test PostgreSQL server cannot be reached."""
    try:
        _admin("SELECT 1")
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL not reachable at {ADMIN_URL}: {type(exc).__name__}: {exc}"
        if os.environ.get("TASKSERVICE_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (TASKSERVICE_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)


class Database:
    """A database of its own on the test server; `drop()` removes it even with clients connected."""

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.name = "taskservice_test_" + uuid.uuid4().hex[:12]
        self.url = admin_url.rpartition("/")[0] + "/" + self.name

    def create(self) -> Database:
        _admin(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self) -> None:
        _admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
