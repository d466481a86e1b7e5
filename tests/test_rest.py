"""REST on the HTTP port (routes from the .proto's google.api.http bindings), with plain HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.transport.methods import API_SERVICES
from taskservice.transport.rest import routes
from tests.servers import ServerProcess


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    """A server that requires tokens, and a client that sends alice's."""
    proc = ServerProcess.jwt(tmp_path_factory.mktemp("rest"), "--rate-limit", "1000").start()
    with httpx.Client(
        base_url=proc.http_url, headers={"authorization": f"Bearer {proc.token('alice')}"}, timeout=10
    ) as client:
        yield proc, client
    proc.stop()


def create(client: httpx.Client, **fields: object) -> dict[str, object]:
    answer = client.post("/v1/tasks", json={"title": "a task", **fields})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_every_binding_in_the_proto_is_a_route() -> None:
    bound = {(r.verb, r.template) for r in routes(API_SERVICES)}
    assert ("GET", "/v1/tasks/{id}") in bound
    assert ("PATCH", "/v1/tasks/{id}") in bound
    assert ("POST", "/v1/tasks/{id}:undelete") in bound
    assert ("POST", "/v1/projects/{project_id}:setMember") in bound
    assert ("GET", "/v1/tasks:watch") in bound


def test_create_get_list_and_delete(api: tuple[ServerProcess, httpx.Client], tag: str) -> None:
    proc, client = api
    created = create(client, labels=[tag], assignedTo="bob", metadata={"k": "v"})
    assert created["createdBy"] == "alice" and created["version"] == "1"
    assert created["status"] == "TASK_STATUS_TODO"
    got = client.get(f"/v1/tasks/{created['id']}")
    assert got.status_code == 200 and got.json() == created
    assert got.headers["etag"] == '"1"'
    # The gRPC port sees the same task: one service layer behind every transport.
    stored = proc.stub().GetTask(
        pb.GetTaskRequest(id=str(created["id"])),
        metadata=[("authorization", f"Bearer {proc.token('alice')}")],
    )
    assert stored.metadata["k"] == "v"
    # Query parameters are ListTasksRequest fields, in either spelling; repeated ones repeat.
    listed = client.get(
        "/v1/tasks", params=[("labels", tag), ("statuses", "TASK_STATUS_TODO"), ("page_size", "5")]
    )
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()["tasks"]] == [created["id"]]
    empty = client.get("/v1/tasks", params={"labels": tag, "statuses": "TASK_STATUS_DONE"}).json()
    assert "tasks" not in empty and "totalCount" not in empty  # nothing matches: only the sequence
    deleted = client.delete(f"/v1/tasks/{created['id']}")
    assert deleted.status_code == 200 and deleted.json() == {}
    missing = client.get(f"/v1/tasks/{created['id']}")
    assert missing.status_code == 404
    assert missing.json()["code"] == 5 and "not found" in missing.json()["message"]


def test_snake_case_input_is_accepted_and_camel_case_comes_out(
    api: tuple[ServerProcess, httpx.Client],
) -> None:
    _, client = api
    created = create(client, assigned_to="carol", due_date="2030-01-02T03:04:05Z")
    assert created["assignedTo"] == "carol" and created["dueDate"] == "2030-01-02T03:04:05Z"


def test_patch_takes_the_mask_from_the_body_keys(api: tuple[ServerProcess, httpx.Client]) -> None:
    _, client = api
    created = create(client, labels=["x", "y"], metadata={"a": "1"})
    # Without a mask an empty list would be "unchanged"; from the body's keys it means "clear".
    patched = client.patch(f"/v1/tasks/{created['id']}", json={"labels": [], "status": "TASK_STATUS_DONE"})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert "labels" not in body and body["status"] == "TASK_STATUS_DONE"
    assert body["metadata"] == {"a": "1"} and body["title"] == "a task"
    assert patched.headers["etag"] == '"2"'
    # An explicit update_mask query parameter wins over the body's keys.
    masked = client.patch(
        f"/v1/tasks/{created['id']}",
        params={"updateMask": "title"},
        json={"title": "renamed", "priority": "PRIORITY_HIGH"},
    )
    assert masked.json()["title"] == "renamed" and masked.json()["priority"] == "PRIORITY_MEDIUM"


def test_if_match_carries_the_version_and_a_stale_one_is_412(api: tuple[ServerProcess, httpx.Client]) -> None:
    _, client = api
    created = create(client)
    url = f"/v1/tasks/{created['id']}"
    etag = client.get(url).headers["etag"]
    ok = client.patch(url, json={"title": "first"}, headers={"if-match": etag})
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    stale = client.patch(url, json={"title": "second"}, headers={"if-match": etag})
    assert stale.status_code == 412
    assert stale.json()["code"] == 10 and "version 2" in stale.json()["message"]
    assert client.delete(url, headers={"if-match": etag}).status_code == 412
    assert client.patch(url, json={"title": "x"}, headers={"if-match": "soon"}).status_code == 400
    # Without If-Match a version conflict stays the standard 409 (ABORTED).
    assert client.patch(url, json={"title": "x", "expectedVersion": "1"}).status_code == 409
    # If-None-Match with the current tag: not modified.
    current = client.get(url).headers["etag"]
    not_modified = client.get(url, headers={"if-none-match": current})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert client.delete(url, headers={"if-match": current}).status_code == 200


def test_idempotency_key_carries_request_id(api: tuple[ServerProcess, httpx.Client], tag: str) -> None:
    _, client = api
    key = {"idempotency-key": f"import-{tag}"}
    first = client.post("/v1/tasks", json={"title": "once", "labels": [tag]}, headers=key)
    again = client.post("/v1/tasks", json={"title": "once", "labels": [tag]}, headers=key)
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/v1/tasks", json={"title": "different", "labels": [tag]}, headers=key)
    assert other.status_code in (400, 409), other.text  # the key was used for another request


def test_errors_are_google_rpc_status_with_the_standard_http_status(
    api: tuple[ServerProcess, httpx.Client],
) -> None:
    proc, client = api
    invalid = client.post("/v1/tasks", json={"title": "   "})
    assert invalid.status_code == 400
    status = invalid.json()
    assert status["code"] == 3
    assert status["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert status["details"][0]["fieldViolations"][0]["field"] == "title"
    assert client.post("/v1/tasks", content=b"{not json").status_code == 400
    assert client.post("/v1/tasks", json={"nope": 1}).status_code == 400
    assert client.get("/v1/tasks", params={"pageSize": "many"}).status_code == 400
    assert client.get("/v1/tasks", params={"statuses": "TASK_STATUS_NOPE"}).status_code == 400
    assert client.get("/v1/tasks", params={"unknownField": "1"}).status_code == 400
    wrong_verb = client.put("/v1/tasks")
    assert wrong_verb.status_code == 405 and "GET" in wrong_verb.headers["allow"]
    assert client.get("/v1/nothing-here").status_code == 404
    anonymous = httpx.get(f"{proc.http_url}/v1/tasks", timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["code"] == 16
    forged = httpx.get(f"{proc.http_url}/v1/tasks", headers={"authorization": "Bearer not.a.jwt"}, timeout=10)
    assert forged.status_code == 401


def test_other_users_tasks_are_not_found(api: tuple[ServerProcess, httpx.Client]) -> None:
    proc, client = api
    created = create(client)
    mallory = {"authorization": f"Bearer {proc.token('mallory')}"}
    answer = httpx.get(f"{proc.http_url}/v1/tasks/{created['id']}", headers=mallory, timeout=10)
    assert answer.status_code == 404


def test_batch_create_reports_partial_success_by_index(
    api: tuple[ServerProcess, httpx.Client], tag: str
) -> None:
    _, client = api
    items = [{"title": "one", "labels": [tag]}, {"title": ""}, {"title": "three", "labels": [tag]}]
    answer = client.post("/v1/tasks:batchCreate", json={"requests": items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["successCount"] == 2 and [t["title"] for t in body["tasks"]] == ["one", "three"]
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(1, 3)]
    too_many = client.post("/v1/tasks:batchCreate", json={"requests": [{"title": "x"}] * 1001})
    assert too_many.status_code == 400 and "at most 1000" in too_many.json()["message"]


def test_methods_not_built_yet_answer_501(api: tuple[ServerProcess, httpx.Client]) -> None:
    """Routes exist for every binding of the .proto; those without a use case yet say so."""
    _, client = api
    document = client.get("/openapi.json").json()["paths"]
    missing = [r for r in routes(API_SERVICES) if r.verb.lower() not in document.get(r.template, {})]
    if not missing:
        pytest.skip("this server implements every method of the .proto")
    path = missing[0].template
    for name in missing[0].variables:
        path = path.replace("{" + name + "}", "x")
    answer = client.request(missing[0].verb, path, json={} if missing[0].body else None)
    assert answer.status_code == 501 and answer.json()["code"] == 12


def test_rate_limited_calls_get_429_with_retry_after(tmp_path_factory: pytest.TempPathFactory) -> None:
    proc = ServerProcess.jwt(
        tmp_path_factory.mktemp("rest-rate"), "--rate-limit", "1", "--rate-burst", "1"
    ).start()
    try:
        headers = {"authorization": f"Bearer {proc.token('alice')}"}
        answers = [httpx.get(f"{proc.http_url}/v1/tasks", headers=headers, timeout=10) for _ in range(3)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited, [a.status_code for a in answers]
        assert int(limited[0].headers["retry-after"]) >= 1
        assert limited[0].json()["code"] == 8
    finally:
        proc.stop()


def test_cors_allows_listed_origins_to_call_rest(tmp_path_factory: pytest.TempPathFactory) -> None:
    origin = "https://board.example"
    proc = ServerProcess.jwt(tmp_path_factory.mktemp("rest-cors"), "--cors-origin", origin).start()
    try:
        preflight = httpx.options(
            f"{proc.http_url}/v1/tasks/x",
            headers={
                "origin": origin,
                "access-control-request-method": "PATCH",
                "access-control-request-headers": "authorization, if-match, content-type",
            },
            timeout=10,
        )
        assert preflight.status_code == 200
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        token = {"authorization": f"Bearer {proc.token('alice')}", "origin": origin}
        created = httpx.post(f"{proc.http_url}/v1/tasks", json={"title": "cors"}, headers=token, timeout=10)
        assert created.headers["access-control-allow-origin"] == origin
        assert "etag" in created.headers["access-control-expose-headers"].lower()
        stranger = httpx.options(
            f"{proc.http_url}/v1/tasks",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
            timeout=10,
        )
        assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
    finally:
        proc.stop()


def test_every_route_answers_with_auth_and_refuses_without(api: tuple[ServerProcess, httpx.Client]) -> None:
    """Each binding of the .proto: implemented ones need a token and then answer (an empty or made-up
    request may be invalid or not found, never a server error); the others answer 501."""
    proc, client = api
    # What the server implements is what its OpenAPI document lists (checked in test_openapi.py).
    document = client.get("/openapi.json").json()["paths"]
    implemented = {(verb.upper(), path) for path, verbs in document.items() for verb in verbs}
    checked = 0
    for route in routes(API_SERVICES):
        if route.streams:
            continue  # the event stream: tests/test_sse.py
        path = route.template
        for name in route.variables:
            path = path.replace("{" + name + "}", "x-" + name.replace("_", "-"))
        body: dict[str, object] | None = {} if route.body else None
        answer = client.request(route.verb, path, json=body)
        anonymous = httpx.request(route.verb, proc.http_url + path, json=body, timeout=10)
        if (route.verb, route.template) in implemented:
            assert answer.status_code in (200, 400, 404), (route.template, answer.text)
            assert anonymous.status_code == 401, route.template
        else:
            assert answer.status_code == 501 and answer.json()["code"] == 12, (route.template, answer.text)
        assert answer.headers["content-type"] == "application/json"
        checked += 1
    assert checked >= 15
