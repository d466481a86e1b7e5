"""Field limits: every violation of a request reported at once, each naming its field."""

from __future__ import annotations

import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import InvalidArgument
from taskservice.domain.validation import Limits, new_task_fields

LIMITS = Limits()


def violations(request: pb.CreateTaskRequest, limits: Limits = LIMITS) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        new_task_fields(limits, request)
    return {v.field: v.description for v in raised.value.violations}


def test_a_valid_request_builds_the_client_settable_fields() -> None:
    task = new_task_fields(
        LIMITS,
        pb.CreateTaskRequest(
            title="  Plan  ", labels=["a", "b", "a"], metadata={"k": "v"}, priority=pb.PRIORITY_HIGH
        ),
    )
    assert task.title == "Plan"  # trimmed
    assert list(task.labels) == ["a", "b"]  # duplicates collapse, order kept
    assert dict(task.metadata) == {"k": "v"}
    assert task.priority == pb.PRIORITY_HIGH


@pytest.mark.parametrize(
    ("request_fields", "field", "words"),
    [
        ({"title": ""}, "title", "must not be empty"),
        ({"title": "   "}, "title", "must not be empty"),
        ({"title": "x" * 201}, "title", "at most 200 characters (got 201)"),
        ({"title": "a\x00b"}, "title", "NUL"),
        ({"description": "d" * 20_001}, "description", "at most 20000"),
        ({"labels": [str(i) for i in range(51)]}, "labels", "at most 50 labels (got 51)"),
        ({"labels": ["x" * 65]}, "labels[0]", "at most 64"),
        ({"labels": [""]}, "labels[0]", "must not be empty"),
        ({"metadata": {str(i): "v" for i in range(65)}}, "metadata", "at most 64 entries"),
        ({"assigned_to": "u" * 257}, "assigned_to", "at most 256"),
        ({"priority": pb.Priority.ValueType(9)}, "priority", "9 is not a valid"),
        ({"request_id": "r" * 129}, "request_id", "at most 128"),
    ],
)
def test_each_limit_names_its_field(request_fields: dict[str, object], field: str, words: str) -> None:
    fields: dict[str, object] = {"title": "ok", **request_fields}
    found = violations(pb.CreateTaskRequest(**fields))  # type: ignore[arg-type]
    assert field in found, found
    assert words in found[field]


def test_every_violation_is_reported_at_once() -> None:
    found = violations(
        pb.CreateTaskRequest(title="", labels=[""], assigned_to="u" * 300, priority=pb.Priority.ValueType(42))
    )
    assert set(found) == {"title", "labels[0]", "assigned_to", "priority"}


def test_limits_are_the_servers_to_set() -> None:
    small = Limits(title_max=5)
    assert "title" in violations(pb.CreateTaskRequest(title="six ch"), small)
    assert new_task_fields(small, pb.CreateTaskRequest(title="five!")).title == "five!"
