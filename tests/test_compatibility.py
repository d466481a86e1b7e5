"""Existing clients keep working: one generated from the original .proto, and one that knows
nothing but what server reflection tells it (as grpcurl or Postman would)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.servers import ROOT, ServerProcess

LEGACY = Path(__file__).parent / "legacy"


def test_a_client_generated_from_the_original_proto_runs_its_whole_cycle(
    tmp_path: Path, server: ServerProcess
) -> None:
    from grpc_tools import protoc

    package = tmp_path / "taskservice"
    package.mkdir()
    (package / "task_service.proto").write_text((LEGACY / "task_service.proto").read_text())
    include = str(Path(protoc.__file__).parent / "_proto")
    assert (
        protoc.main(
            [
                "protoc",
                f"-I{tmp_path}",
                f"-I{include}",
                f"--python_out={tmp_path}",
                f"--grpc_python_out={tmp_path}",
                "taskservice/task_service.proto",
            ]
        )
        == 0
    )
    (package / "__init__.py").write_text("")
    result = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "legacy_client.py"), str(tmp_path), server.grpc_addr],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "legacy client cycle: ok" in result.stdout


def test_every_rpc_can_be_driven_through_server_reflection(server: ServerProcess) -> None:
    channel = grpc.insecure_channel(server.grpc_addr)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    assert {"taskservice.TaskService", "grpc.health.v1.Health"} <= set(services)
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName("taskservice.TaskService")
    # The first round's methods, in their order; later additions follow them.
    assert [m.name for m in service.methods][:8] == [
        "CreateTask",
        "GetTask",
        "UpdateTask",
        "DeleteTask",
        "ListTasks",
        "WatchTasks",
        "BulkCreateTasks",
        "ProcessTaskStream",
    ]

    def call(
        name: str,
        body: dict[str, Any] | list[dict[str, Any]],
        stream_in: bool = False,
        stream_out: bool = False,
    ) -> Any:
        method = service.methods_by_name[name]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        path = f"/taskservice.TaskService/{name}"
        encode = lambda m: m.SerializeToString()  # noqa: E731
        kind = {
            (False, False): channel.unary_unary,
            (False, True): channel.unary_stream,
            (True, False): channel.stream_unary,
            (True, True): channel.stream_stream,
        }[(stream_in, stream_out)]
        rpc = kind(path, request_serializer=encode, response_deserializer=response_class.FromString)
        if stream_in:
            assert isinstance(body, list)
            answer = rpc(iter([json_format.ParseDict(item, request_class()) for item in body]))
        else:
            assert isinstance(body, dict)
            answer = rpc(json_format.ParseDict(body, request_class()))
        if stream_out:
            return answer
        return json_format.MessageToDict(answer)

    created = call(
        "CreateTask", {"title": "via reflection", "labels": ["reflect"], "priority": "PRIORITY_HIGH"}
    )
    assert created["status"] == "TASK_STATUS_TODO" and created["version"] == "1"
    assert call("GetTask", {"id": created["id"]})["title"] == "via reflection"
    updated = call("UpdateTask", {"id": created["id"], "status": "TASK_STATUS_DONE", "expectedVersion": "1"})
    assert updated["version"] == "2"
    assert call("ListTasks", {"labels": ["reflect"]})["totalCount"] == 1
    bulk = call("BulkCreateTasks", [{"title": "b", "labels": ["reflect"]}, {"title": ""}], stream_in=True)
    assert bulk["successCount"] == 1 and bulk["errors"][0]["index"] == 1
    results = list(call("ProcessTaskStream", [{"commandId": "g", "get": {"id": created["id"]}}], True, True))
    assert results[0].success
    watch = call("WatchTasks", {"labels": ["reflect"], "includeInitial": True}, stream_out=True)
    first = next(watch)
    assert first.task.title in {"via reflection", "b"}
    watch.cancel()
    assert call("DeleteTask", {"id": created["id"]}) == {}
    channel.close()


def test_generated_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_proto.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
