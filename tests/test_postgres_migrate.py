"""`taskservice migrate` prepares a PostgreSQL database once; replicas starting together do not race."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from taskservice.store.migrations import migrations
from tests.postgres import Database, query, require_postgres
from tests.servers import TASKSERVICE

pytestmark = pytest.mark.postgres


def test_migrate_applies_every_version_once_even_when_run_concurrently(tmp_path: Path) -> None:
    require_postgres()
    db = Database().create()
    try:
        command = [TASKSERVICE, "migrate", "--store", db.url, "--data-dir", str(tmp_path)]
        runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
        outputs = [run.communicate(timeout=60)[0].decode() for run in runs]
        assert [run.returncode for run in runs] == [0, 0, 0], outputs
        applied = [row[0] for row in query(db.url, "SELECT version FROM schema_migrations ORDER BY version")]
        assert applied == [m.version for m in migrations("postgres")]
        assert [m.version for m in migrations("postgres")] == [m.version for m in migrations("sqlite")]
        assert query(db.url, "SELECT head, horizon FROM event_log")[0] == (0, 0)
    finally:
        db.drop()
