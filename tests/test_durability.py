"""What survives: acknowledged writes across kill -9, restarts, resume; graceful SIGTERM."""

from __future__ import annotations

import threading
import time

import grpc

from taskservice.api import task_service_pb2 as pb
from tests.eventually import eventually
from tests.servers import ServerProcess
from tests.watching import Watch


def test_acknowledged_writes_survive_kill_9(fresh_server: ServerProcess) -> None:
    server = fresh_server.start()
    stub = server.stub()
    acknowledged: list[pb.Task] = []
    stop = threading.Event()

    def write() -> None:
        writer = server.stub()
        i = 0
        while not stop.is_set():
            try:
                acknowledged.append(writer.CreateTask(pb.CreateTaskRequest(title=f"t{i}", labels=["k9"])))
            except (grpc.RpcError, ValueError):  # ValueError: kill() closed this writer's channel
                return
            i += 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    server.kill()  # SIGKILL while writes are in flight
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) > 20
    server.start()
    stub = server.stub()
    for task in acknowledged:
        assert stub.GetTask(pb.GetTaskRequest(id=task.id)) == task
    assert stub.ListTasks(pb.ListTasksRequest(labels=["k9"])).total_count >= len(acknowledged)


def test_restart_keeps_tasks_and_resume_continues_from_the_log(fresh_server: ServerProcess) -> None:
    server = fresh_server.start()
    stub = server.stub()
    task = stub.CreateTask(pb.CreateTaskRequest(title="persist me", labels=["r"]))
    watch = Watch(stub, pb.WatchTasksRequest(include_initial=True))
    resume_from = watch.next().sequence
    watch.cancel()
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="changed before restart"))
    server.restart()
    stub = server.stub()
    assert stub.GetTask(pb.GetTaskRequest(id=task.id)).title == "changed before restart"
    resumed = Watch(stub, pb.WatchTasksRequest(after_sequence=resume_from))
    replayed = resumed.next()
    assert replayed.task.title == "changed before restart" and replayed.sequence > resume_from
    stub.UpdateTask(pb.UpdateTaskRequest(id=task.id, title="after restart"))
    live = resumed.next()
    assert live.task.title == "after restart" and live.sequence == replayed.sequence + 1
    resumed.cancel()


def test_sigterm_ends_open_watches_with_unavailable_and_exits_cleanly(fresh_server: ServerProcess) -> None:
    server = fresh_server.start()
    stub = server.stub()
    stub.CreateTask(pb.CreateTaskRequest(title="x"))
    watch = Watch(stub, pb.WatchTasksRequest(include_initial=True))
    watch.next(timeout=15)  # the stream is open once its first event arrives
    assert server.proc is not None
    server.proc.send_signal(15)
    error = watch.end()
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "after_sequence" in error.details()
    assert server.proc.wait(10) == 0


def test_retention_prunes_history_and_old_resumes_get_out_of_range(fresh_server: ServerProcess) -> None:
    fresh_server.args += ["--event-retention-count", "5"]
    server = fresh_server.start()
    stub = server.stub()
    first = stub.CreateTask(pb.CreateTaskRequest(title="v1"))
    for i in range(10):
        stub.UpdateTask(pb.UpdateTaskRequest(id=first.id, title=f"v{i + 2}"))
    server.restart()  # pruning runs at start-up, in the background: wait for it
    stub = server.stub()

    def replay_refused() -> bool:
        try:
            next(iter(stub.WatchTasks(pb.WatchTasksRequest(after_sequence=1), timeout=2)))
        except grpc.RpcError as error:
            return bool(error.code() == grpc.StatusCode.OUT_OF_RANGE)
        return False

    eventually(replay_refused, timeout=20, what="the restarted server's prune (a replay from 1 refused)")
    # The task still exists, so its history outlives the resume window (docs/finding.md).
    assert len(stub.ListTaskEvents(pb.ListTaskEventsRequest(task_id=first.id)).events) == 11
    recent = Watch(stub, pb.WatchTasksRequest(after_sequence=8))
    assert [e.sequence for e in recent.take(3)] == [9, 10, 11]
    recent.cancel()
