"""`buf curl` (the Buf CLI, from the board's npm devDependencies) against the HTTP port, reading the
.proto compiled by protoc: Connect and gRPC-Web, as a client written by others speaks them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_tools import protoc

from tests.servers import ROOT, ServerProcess

BUF = ROOT / "web" / "node_modules" / ".bin" / "buf"
METHOD = "taskservice.TaskService"


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUF.exists():
        pytest.skip("buf is not installed (web/node_modules: run `make web`)")
    out = tmp_path_factory.mktemp("buf") / "api.binpb"
    sys.path.insert(0, str(ROOT / "scripts"))
    from gen_proto import include_dirs  # the same imports the generated code was built with

    args = ["protoc", f"-I{ROOT / 'proto'}", *(f"-I{d}" for d in include_dirs())]
    assert (
        protoc.main(
            [*args, "--include_imports", f"--descriptor_set_out={out}", "taskservice/task_service.proto"]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess.jwt(tmp_path_factory.mktemp("buf-server")).start()
    yield proc
    proc.stop()


def buf_curl(
    schema: Path, server: ServerProcess, protocol: str, method: str, data: object, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BUF),
            "curl",
            "--schema",
            str(schema),
            "--protocol",
            protocol,
            "--header",
            f"Authorization: Bearer {server.token('alice')}",
            "--data",
            json.dumps(data),
            *extra,
            f"{server.http_url}/{METHOD}/{method}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
def test_unary_calls_and_errors(schema: Path, api: ServerProcess, protocol: str) -> None:
    created = buf_curl(schema, api, protocol, "CreateTask", {"title": f"from buf over {protocol}"})
    assert created.returncode == 0, created.stderr
    task = json.loads(created.stdout)
    assert task["createdBy"] == "alice" and task["version"] == "1"
    got = buf_curl(schema, api, protocol, "GetTask", {"id": task["id"]})
    assert json.loads(got.stdout) == task
    missing = buf_curl(schema, api, protocol, "GetTask", {"id": "no-such-task"})
    assert missing.returncode != 0
    assert json.loads(missing.stderr)["code"] == "not_found"


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
def test_watch_streams(schema: Path, api: ServerProcess, protocol: str, tag: str) -> None:
    created = json.loads(
        buf_curl(schema, api, protocol, "CreateTask", {"title": "watched", "labels": [tag]}).stdout
    )
    # buf's own time limit ends the endless stream once the initial events arrived.
    watch = buf_curl(
        schema, api, protocol, "WatchTasks", {"labels": [tag], "includeInitial": True}, "--timeout", "3s"
    )
    assert '"eventType": "EVENT_TYPE_CREATED"' in watch.stdout, watch.stderr
    assert created["id"] in watch.stdout
