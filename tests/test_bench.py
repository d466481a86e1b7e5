"""`taskservice bench --quick` runs every scenario against the server and the ceiling and reports them."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.servers import TASKSERVICE

SCENARIOS = (
    "ListTasks first page, 1,000 tasks",
    "ListTasks deep page, 1,000 tasks",
    "CreateTask",
    "GetTask",
    "CreateTask p99 at 1,000 req/s",
    "UpdateTask",
    "BulkCreateTasks",
    "WatchTasks, 100 watchers",
    "WatchTasks, 100 watchers p99 latency",
    "WatchTasks, 100 watchers lost or reordered",
    "5,000 idle watchers, server RSS",
    "start-up with 20,000 tasks",
    "RSS with 20,000 tasks",
    "ListTasks first page, 20,000 vs 1,000 tasks",
    "ListTasks deep page, 20,000 vs 1,000 tasks",
    "Export p99 commit→ack, nats (CreateTask saturated)",
    "Export p99 commit→ack, redis (CreateTask saturated)",
    "Webhook p99 commit→received (CreateTask saturated)",
    "REST GET /v1/tasks/{id}",
    "Connect JSON GetTask",
)
COMPARED_WITH_CEILING = ("CreateTask", "GetTask", "UpdateTask", "BulkCreateTasks", "WatchTasks, 100 watchers")


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    if shutil.which("h2load") is None and not os.environ.get("CI"):
        pytest.skip("h2load is not installed (make install installs it where apt is available)")
    folder = tmp_path_factory.mktemp("bench")
    results, printed = _quick_bench(folder, "results")
    return results, folder / "results.png", printed


def _quick_bench(folder: Path, name: str, *args: str) -> tuple[dict[str, Any], str]:
    """`taskservice bench --quick *args`, writing NAME.json and NAME.png in `folder` and sharing its
    cache: the results and what it printed."""
    out = folder / f"{name}.json"
    done = subprocess.run(
        [TASKSERVICE, "bench", "--quick", *args, "--out", str(out), "--chart", str(folder / f"{name}.png"),
         "--cache-dir", str(folder / "cache")],
        capture_output=True, text=True, timeout=240, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text()), done.stdout


@pytest.mark.timeout(300)
def test_quick_bench_reports_every_scenario_with_a_figure(
    quick_bench: tuple[dict[str, Any], Path, str],
) -> None:
    results, _, _ = quick_bench
    by_name = {row["name"]: row for row in results["results"]}
    assert set(SCENARIOS) <= set(by_name)
    for name in SCENARIOS:
        value = by_name[name]["value"]
        assert isinstance(value, int | float) and math.isfinite(value), name
    for name in COMPARED_WITH_CEILING:
        assert by_name[name]["ceiling"] > 0 and by_name[name]["ratio"] > 0, name
    assert results["meta"]["quick"] is True and results["meta"]["auth"] in ("jwt", "none")
    if Path("/proc/stat").exists():  # the machine's steal time over the run, to judge its noise
        assert 0 <= results["meta"]["steal_share"] < 1 and results["meta"]["steal_s"] >= 0


def test_quick_bench_watchers_lose_and_reorder_nothing(quick_bench: tuple[dict[str, Any], Path, str]) -> None:
    results, _, _ = quick_bench
    row = next(r for r in results["results"] if r["name"] == "WatchTasks, 100 watchers lost or reordered")
    assert row["value"] == 0


def test_quick_bench_reads_the_watches_with_the_compiled_driver(
    quick_bench: tuple[dict[str, Any], Path, str],
) -> None:
    _, chart, _ = quick_bench
    assert list((chart.parent / "cache").glob("watchdriver-*")), "the watch driver was not built in the cache"


def test_quick_bench_prints_the_table_and_draws_the_chart(
    quick_bench: tuple[dict[str, Any], Path, str],
) -> None:
    _, chart, printed = quick_bench
    assert "scenario" in printed and "ceiling" in printed and "GetTask" in printed
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_bench_bulk_stores_every_task_it_answered(
    quick_bench: tuple[dict[str, Any], Path, str],
) -> None:
    """BulkCreateTasks is driven by h2load, which reads no gRPC status: the bench counts the tasks
    the server answered as created in its database afterwards."""
    results, _, _ = quick_bench
    row = next(r for r in results["results"] if r["name"] == "BulkCreateTasks")
    assert "h2load" in row["note"] and "; 0 answered but not stored" in row["note"], row["note"]


@pytest.mark.timeout(300)
def test_bench_only_runs_the_groups_asked_for(quick_bench: tuple[dict[str, Any], Path, str]) -> None:
    """`--only bulk` measures BulkCreateTasks against the ceiling and nothing else: a change re-measured
    in seconds rather than minutes."""
    _, chart, _ = quick_bench
    results, printed = _quick_bench(chart.parent, "only", "--only", "bulk")
    assert [row["name"] for row in results["results"]] == ["BulkCreateTasks"]
    assert results["results"][0]["ceiling"] > 0 and results["meta"]["only"] == ["bulk"]
    assert "only: bulk" in printed


@pytest.mark.timeout(300)
def test_bench_runs_the_server_from_another_source_tree(
    quick_bench: tuple[dict[str, Any], Path, str],
) -> None:
    """`--server-source DIR` measures the taskservice package in DIR (another version of the code):
    a copy of this one that marks its import proves the server ran from there."""
    _, chart, _ = quick_bench
    folder = chart.parent
    other = folder / "other-src"
    shutil.copytree(
        Path(__file__).parents[1] / "src" / "taskservice",
        other / "taskservice",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    marker = other / "imported-by"
    with (other / "taskservice" / "__init__.py").open("a") as init:
        init.write(
            f"\nimport sys as _sys\nopen({str(marker)!r}, 'a').write(' '.join(_sys.argv[1:2]) + '\\n')\n"
        )
    results, _ = _quick_bench(folder, "other", "--only", "bulk", "--server-source", str(other))
    assert "serve" in marker.read_text().split(), marker.read_text()
    assert results["meta"]["server_source"] == str(other.resolve())
    assert results["results"][0]["name"] == "BulkCreateTasks" and results["results"][0]["value"] > 0


@pytest.mark.timeout(300)
def test_bench_http_group_measures_rest_and_connect_against_grpc(tmp_path: Path) -> None:
    """`--only http`: GetTask over REST and Connect JSON on the HTTP port, each against gRPC GetTask
    on the same server in the same run."""
    if shutil.which("h2load") is None and not os.environ.get("CI"):
        pytest.skip("h2load is not installed (make install installs it where apt is available)")
    results, printed = _quick_bench(tmp_path, "http", "--only", "http")
    rows = {row["name"]: row for row in results["results"]}
    assert set(rows) == {"REST GET /v1/tasks/{id}", "Connect JSON GetTask"}
    for row in rows.values():
        assert (
            row["value"] > 0 and row["ceiling"] > 0 and row["ratio_of"] == "gRPC GetTask on the same server"
        )
        assert "; 0 failed" in row["note"], row["note"]
    assert "only: http" in printed
