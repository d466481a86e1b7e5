"""/metrics counts a scripted mix of calls exactly, with bounded labels; `taskservice stats` reads it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from tests.eventually import eventually
from tests.prometheus import Samples, scrape, value
from tests.servers import TASKSERVICE, ServerProcess

SERVICE = "taskservice.TaskService"
MISSING_ID = "00000000-0000-7000-8000-000000000000"


def rpc(method: str, kind: str, **labels: str) -> dict[str, str]:
    return {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method, **labels}


def scraped_until(
    server: ServerProcess, condition: Callable[[Samples], bool], timeout: float = 5.0
) -> Samples:
    """The first scrape for which `condition` holds."""
    return eventually(lambda: scrape(server), condition, timeout=timeout, what="a scrape that matches")


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own, so every count below is exactly what this module did."""
    proc = ServerProcess(tmp_path_factory.mktemp("observed")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def scripted(observed: ServerProcess) -> list[str]:
    """Run the mix once: unary successes and errors, a client stream, a bidi stream, a watch."""
    stub = observed.stub()
    ids = [stub.CreateTask(pb.CreateTaskRequest(title=f"task {i}", labels=["mix"])).id for i in range(3)]
    with pytest.raises(grpc.RpcError):
        stub.CreateTask(pb.CreateTaskRequest(title="  "))
    stub.GetTask(pb.GetTaskRequest(id=ids[0]))
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            stub.GetTask(pb.GetTaskRequest(id=MISSING_ID))
    stub.UpdateTask(pb.UpdateTaskRequest(id=ids[0], status=pb.TASK_STATUS_IN_PROGRESS))
    stub.DeleteTask(pb.DeleteTaskRequest(id=ids[1]))
    bulk = stub.BulkCreateTasks(
        iter([pb.CreateTaskRequest(title="b1", labels=["mix"]), pb.CreateTaskRequest(title=""),
              pb.CreateTaskRequest(title="b2", labels=["mix"])])
    )  # fmt: skip
    assert bulk.success_count == 2
    results = list(
        stub.ProcessTaskStream(
            iter([pb.TaskCommand(get=pb.GetTaskRequest(id=ids[2])), pb.TaskCommand(get=pb.GetTaskRequest(id=MISSING_ID))])
        )
    )  # fmt: skip
    assert [r.success for r in results] == [True, False]
    with pytest.raises(grpc.RpcError) as unknown:
        observed.channel().unary_unary(f"/{SERVICE}/NoSuchMethod")(b"")
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    return ids + [t.id for t in bulk.tasks]


def test_unary_calls_are_counted_by_method_and_code(observed: ServerProcess, scripted: list[str]) -> None:
    s = scrape(observed)
    assert value(s, "grpc_server_started_total", **rpc("CreateTask", "unary")) == 4
    assert value(s, "grpc_server_handled_total", **rpc("CreateTask", "unary", grpc_code="OK")) == 3
    assert (
        value(s, "grpc_server_handled_total", **rpc("CreateTask", "unary", grpc_code="InvalidArgument")) == 1
    )
    assert value(s, "grpc_server_handling_seconds_count", **rpc("CreateTask", "unary")) == 4
    assert value(s, "grpc_server_msg_received_total", **rpc("CreateTask", "unary")) == 4
    assert value(s, "grpc_server_msg_sent_total", **rpc("CreateTask", "unary")) == 3
    assert value(s, "grpc_server_handled_total", **rpc("GetTask", "unary", grpc_code="OK")) == 1
    assert value(s, "grpc_server_handled_total", **rpc("GetTask", "unary", grpc_code="NotFound")) == 2
    assert value(s, "grpc_server_handled_total", **rpc("UpdateTask", "unary", grpc_code="OK")) == 1
    assert value(s, "grpc_server_handled_total", **rpc("DeleteTask", "unary", grpc_code="OK")) == 1
    bucket = value(s, "grpc_server_handling_seconds_bucket", **rpc("GetTask", "unary", le="+Inf"))
    assert bucket == 3


def test_stream_calls_count_their_messages(observed: ServerProcess, scripted: list[str]) -> None:
    s = scrape(observed)
    bulk = rpc("BulkCreateTasks", "client_stream")
    assert value(s, "grpc_server_handled_total", **bulk, grpc_code="OK") == 1
    assert value(s, "grpc_server_msg_received_total", **bulk) == 3
    assert value(s, "grpc_server_msg_sent_total", **bulk) == 1
    process = rpc("ProcessTaskStream", "bidi_stream")
    assert value(s, "grpc_server_handled_total", **process, grpc_code="OK") == 1
    assert value(s, "grpc_server_msg_received_total", **process) == 2
    assert value(s, "grpc_server_msg_sent_total", **process) == 2
    assert value(s, "grpc_server_active_streams", **process) == 0


def test_events_and_tasks_by_status_follow_the_changes(observed: ServerProcess, scripted: list[str]) -> None:
    s = scrape(observed)
    assert value(s, "taskservice_events_appended_total", event_type="created") == 5
    assert value(s, "taskservice_events_appended_total", event_type="updated") == 1
    assert value(s, "taskservice_events_appended_total", event_type="deleted") == 1
    assert value(s, "taskservice_event_head_sequence") == 7
    assert value(s, "taskservice_tasks", status="todo") == 3
    assert value(s, "taskservice_tasks", status="in_progress") == 1
    assert value(s, "taskservice_tasks", status="done") == 0
    assert value(s, "taskservice_store_operation_seconds_count", operation="create_many") == 4
    assert value(s, "taskservice_ready") == 1


def test_labels_never_carry_ids_or_unknown_methods(observed: ServerProcess, scripted: list[str]) -> None:
    labels = {v for (_, pairs) in scrape(observed) for _, v in pairs}
    assert not labels & {*scripted, MISSING_ID, "anonymous", "NoSuchMethod"}


def test_a_watch_is_counted_while_open_and_as_cancelled_after(
    observed: ServerProcess, scripted: list[str]
) -> None:
    watch = rpc("WatchTasks", "server_stream")
    stream = observed.stub().WatchTasks(pb.WatchTasksRequest(labels=["mix"], include_initial=True))
    initial = [next(stream) for _ in range(4)]
    assert {e.task.id for e in initial} == {scripted[0], scripted[2], scripted[3], scripted[4]}
    s = scraped_until(observed, lambda s: value(s, "taskservice_watchers") == 1)
    assert value(s, "taskservice_watchers") == 1
    assert value(s, "grpc_server_active_streams", **watch) == 1
    assert value(s, "taskservice_watcher_lag_events") == 0
    stream.cancel()
    s = scraped_until(
        observed, lambda s: value(s, "grpc_server_handled_total", **watch, grpc_code="Canceled") == 1
    )
    assert value(s, "grpc_server_handled_total", **watch, grpc_code="Canceled") == 1
    assert value(s, "grpc_server_msg_sent_total", **watch) == 4
    assert value(s, "grpc_server_active_streams", **watch) == 0
    assert value(s, "taskservice_watchers") == 0


def test_stats_prints_per_method_rate_errors_and_latency(
    observed: ServerProcess, scripted: list[str], tmp_path: Path
) -> None:
    out = subprocess.run(
        [TASKSERVICE, "stats", "--server", observed.http_url, "--interval", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    cells = [line.replace("│", " ").split() for line in out.stdout.splitlines() if f"{SERVICE}/" in line]
    rows = {row[0]: row[1:] for row in cells}
    calls, _rate, errors, p50, p99 = rows[f"{SERVICE}/CreateTask"]
    assert (calls, errors) == ("4", "25.0%")  # one of four was INVALID_ARGUMENT
    assert 0 < float(p50) <= float(p99)  # milliseconds
    assert rows[f"{SERVICE}/GetTask"][2] == "66.7%"
    assert "ready: yes" in out.stdout
    assert "todo 3" in out.stdout
