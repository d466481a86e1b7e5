"""`taskservice soak --duration 60s`, as CI runs it, on SQLite and on two PostgreSQL replicas (with a
replica killed and restarted, and the database restarted when PostgreSQL's binaries are here to run
a private cluster): it must pass its own checks and write its JSON and PNG."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.postgres import ADMIN_URL, require_postgres
from tests.servers import TASKSERVICE


def _private_postgres_available() -> bool:
    return bool(shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")))


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_one_minute_soak_passes_its_checks(store: str, tmp_path: Path) -> None:
    args = ["--duration", "60s", "--store", store, "--rate", "50", "--watchers", "100"]
    if store == "postgres":
        if _private_postgres_available():
            args.append("--private-postgres")
        else:
            require_postgres()
            args += ["--postgres", ADMIN_URL]
    run = subprocess.run(
        [TASKSERVICE, "soak", *args, "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["passed"] and result["lost_writes"] == 0 and result["watchers_mismatched"] == 0
    assert result["watcher_resumes"] > 100  # watchers dropped and resumed, many times
    assert (tmp_path / "soak.png").stat().st_size > 0
    if store == "postgres":
        faults = [what for _, what in result["faults"]]
        assert "replica kill -9" in faults and "replica restarted" in faults
        if "--private-postgres" in args:
            assert "database restarted" in faults
