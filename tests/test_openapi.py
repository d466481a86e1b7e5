"""The OpenAPI document at /openapi.json: generated from the .proto, valid, and true to the server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from taskservice.transport.methods import API_SERVICES
from tests.servers import ServerProcess

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess.jwt(tmp_path_factory.mktemp("openapi")).start()
    yield proc
    proc.stop()


def test_the_document_is_valid_openapi_3_1(api: ServerProcess) -> None:
    answer = httpx.get(f"{api.http_url}/openapi.json", timeout=10)
    assert answer.status_code == 200
    document = answer.json()
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    assert set(paths["/v1/tasks/{id}"]) == {"get", "patch", "delete"}
    assert paths["/v1/tasks:watch"]["get"]["responses"]["200"]["content"].keys() == {"text/event-stream"}
    assert "/v1/tasks:batchCreate" in paths
    patch = paths["/v1/tasks/{id}"]["patch"]
    assert {p["name"] for p in patch["parameters"]} >= {"id", "updateMask", "If-Match"}
    listing = {p["name"] for p in paths["/v1/tasks"]["get"]["parameters"]}
    assert {"pageSize", "pageToken", "statuses", "labels", "orderBy"} <= listing
    task = document["components"]["schemas"]["Task"]["properties"]
    assert task["status"] == {"$ref": "#/components/schemas/TaskStatus"}
    assert task["createdAt"]["format"] == "date-time"
    # Operations are the .proto's methods; those this server lacks are left out (a route not listed
    # answers 501: tests/test_rest.py).
    methods = {m.name for service in API_SERVICES for m in service.methods}
    assert {op["operationId"] for verbs in paths.values() for op in verbs.values()} <= methods


def test_docs_page_renders_the_document_without_a_cdn(api: ServerProcess) -> None:
    page = httpx.get(f"{api.http_url}/docs", timeout=10)
    if page.status_code == 404:
        pytest.skip("the board (and with it the API page) is not built")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert "http" not in page.text.split("<body>")[1].replace("/openapi.json", "")  # nothing from elsewhere
    script = httpx.get(f"{api.http_url}/docs/scalar.js", timeout=10)
    assert script.status_code == 200 and len(script.content) > 100_000


def test_schemathesis_finds_no_server_error_nor_schema_violation(api: ServerProcess) -> None:
    """Generated requests against every REST operation but the endless event stream, bounded."""
    token = api.token("alice")
    checks = "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance,response_headers_conformance"
    run = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{api.http_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--exclude-operation-id",
            "WatchTasks",
            "--checks",
            checks,
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=api.data_dir,
        env={"SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
