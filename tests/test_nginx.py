"""deploy/nginx.conf, as shipped, balances gRPC over two replicas: unary calls, long watches and a
replica restart behind it."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.eventually import eventually
from tests.postgres import Database, require_postgres
from tests.servers import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.postgres

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def balanced(tmp_path: Path) -> Iterator[tuple[str, list[ServerProcess]]]:
    """Two replicas on one database behind nginx; yields nginx's gRPC address and the replicas."""
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    require_postgres()
    db = Database().create()
    replicas = [ServerProcess(tmp_path / f"r{i}", store=db.url) for i in range(2)]
    port = free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("127.0.0.1:50061", replicas[0].grpc_addr).replace(
        "127.0.0.1:50062", replicas[1].grpc_addr
    )
    site = site.replace("127.0.0.1:50051", f"127.0.0.1:{port}")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {tmp_path};\n"
        f"  include {tmp_path}/site.conf;\n}}\n"
    )
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for replica in replicas:
            replica.start()
        nginx = subprocess.Popen(
            [NGINX, "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")]
        )
        grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=10)
        yield f"127.0.0.1:{port}", replicas
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        for replica in replicas:
            replica.kill()
        db.drop()


def create_with_retry(stub: rpc.TaskServiceStub, request: pb.CreateTaskRequest) -> pb.Task:
    """Retry on UNAVAILABLE, as clients should: nginx answers 502 (UNAVAILABLE) for a call it had
    already sent on a kept-alive connection to the replica that just stopped, and does not replay
    it itself. The request_id makes the retry safe."""
    deadline = time.monotonic() + 20  # a replica's restart, plus nginx's fail_timeout for each upstream
    failures: list[str] = []
    while time.monotonic() < deadline:
        try:
            task: pb.Task = stub.CreateTask(request, timeout=5)
            return task
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            failures.append(error.details() or "")
            time.sleep(0.1)
    raise AssertionError(
        f"the service stayed unavailable for 20 s: {len(failures)} calls, last {failures[-3:]}"
    )


def test_nginx_balances_calls_and_watchers_resume_across_a_replica_restart(
    balanced: tuple[str, list[ServerProcess]], tag: str
) -> None:
    address, replicas = balanced
    stub = rpc.TaskServiceStub(grpc.insecure_channel(address))
    seed = stub.CreateTask(pb.CreateTaskRequest(title="seed", labels=[tag]))
    assert stub.GetTask(pb.GetTaskRequest(id=seed.id)) == seed
    page = stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=1))
    assert page.total_count == 1

    seen: list[pb.TaskEvent] = []
    cut_off = 0
    codes: list[tuple[grpc.StatusCode, str]] = []
    done = threading.Event()

    def watch() -> None:
        nonlocal cut_off
        request = pb.WatchTasksRequest(labels=[tag], include_initial=True)
        while not done.is_set():
            try:
                for event in stub.WatchTasks(request, timeout=60):
                    seen.append(event)
                    if event.task.title == "last":
                        done.set()
                        return
            except grpc.RpcError as error:
                codes.append((error.code(), error.details() or ""))
                cut_off += 1
                request = pb.WatchTasksRequest(labels=[tag], after_sequence=seen[-1].sequence)
                time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    eventually(lambda: seen, what="the watch's first event")
    for replica in replicas:  # a rolling restart: whichever replica holds the watch, it is cut
        replica.stop()
        request = pb.CreateTaskRequest(
            title=f"while {replica.grpc_port} restarts", labels=[tag], request_id=f"{tag}-{replica.grpc_port}"
        )
        create_with_retry(stub, request)
        replica.start()
    stub.CreateTask(pb.CreateTaskRequest(title="last", labels=[tag]), wait_for_ready=True)
    watcher.join(30)

    # A stream nginx loses to a stopping replica may end without a grpc-status trailer (UNKNOWN,
    # "Stream removed"); resuming a watch is always safe, so the client resumes on both.
    assert {code for code, _ in codes} <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN}, codes
    assert done.is_set() and cut_off >= 1  # resumes that reach the stopped replica are cut again
    titles = [e.task.title for e in seen]
    assert titles == ["seed"] + [f"while {r.grpc_port} restarts" for r in replicas] + ["last"]
