"""`taskservice soak --duration 60s`, as CI runs it, on SQLite and on two PostgreSQL replicas (with a
replica killed and restarted, and the database restarted when PostgreSQL's binaries are here to run
a private cluster): it must pass its own checks, with projects in the load, and write its JSON and
PNG. The history check itself is tested on made-up logs: it must catch a watcher that missed an
event or received another project's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from taskservice.bench.soak_checks import LoggedEvent, WatcherLog, event_key, history_mismatches
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
    projects = result["projects"]
    assert projects["projects"] >= 1 and projects["tasks"] > 0 and projects["watchers"] > 0
    assert projects["teammate_writes"] > 0  # members changed tasks another member created
    assert projects["watcher_events"] > 0 and projects["watchers_mismatched"] == 0
    assert (tmp_path / "soak.png").stat().st_size > 0
    if store == "postgres":
        faults = [what for _, what in result["faults"]]
        assert "replica kill -9" in faults and "replica restarted" in faults
        if "--private-postgres" in args:
            assert "database restarted" in faults


_LOG = [
    LoggedEvent(11, 1, "a", 1, ("ann",), ""),  # ann's own task
    LoggedEvent(12, 1, "b", 1, ("bob",), "p1"),  # bob's task in p1
    LoggedEvent(13, 2, "b", 2, ("bob",), "p1"),  # changed by a teammate
    LoggedEvent(14, 1, "c", 1, ("ann",), "p2"),  # ann's task in p2
    LoggedEvent(15, 3, "b", 3, ("bob",), "p1"),
]


def _watcher(user: str, project_id: str, received: list[LoggedEvent]) -> WatcherLog:
    log = WatcherLog(user, start=10, project_id=project_id)
    for event in received:
        log.digest.update(event_key(event.sequence, event.event_type, event.task_id, event.version))
        log.count += 1
        log.last = event.sequence
    return log


def test_a_project_watcher_is_judged_on_its_project_and_a_label_watcher_on_its_label() -> None:
    whole = [
        _watcher("carol", "p1", [_LOG[1], _LOG[2], _LOG[4]]),
        _watcher("ann", "p2", [_LOG[3]]),
        _watcher("ann", "", [_LOG[0], _LOG[3]]),
        _watcher("bob", "", [_LOG[1], _LOG[2]]),  # dropped before 15: judged up to 13
    ]
    assert history_mismatches(whole, _LOG) == []


def test_a_missed_or_foreign_event_is_a_mismatch() -> None:
    missed = _watcher("carol", "p1", [_LOG[1], _LOG[4]])
    foreign = _watcher("carol", "p1", [_LOG[1], _LOG[2], _LOG[3], _LOG[4]])
    missed_teammate = _watcher("bob", "", [_LOG[1], _LOG[4]])  # a teammate's change to bob's task
    wrong = history_mismatches([missed, foreign, missed_teammate], _LOG)
    assert wrong == [missed, foreign, missed_teammate]
