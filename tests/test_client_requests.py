"""The request builders: the friendly values taskctl and Python callers pass become exact messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import grpc
import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.client.errors import TaskServiceError
from taskservice.client.policy import Retry
from taskservice.client.requests import (
    priority_value,
    status_name,
    status_value,
    timestamp,
    update_request,
)


@pytest.mark.parametrize(
    "value", ["in-progress", "IN_PROGRESS", "TASK_STATUS_IN_PROGRESS", " In Progress ", 2]
)
def test_status_accepts_short_protobuf_and_numeric_forms(value: str | int) -> None:
    assert status_value(value) == pb.TASK_STATUS_IN_PROGRESS


@pytest.mark.parametrize("value", ["urgent", "", "unspecified", 0, 9])
def test_undefined_priorities_are_refused(value: str | int) -> None:
    with pytest.raises(ValueError):
        priority_value(value)


def test_status_names_round_trip_and_unknown_numbers_print_as_numbers() -> None:
    assert [status_value(status_name(v)) for v in (1, 2, 3, 4)] == [1, 2, 3, 4]
    assert status_name(42) == "42"


def test_timestamps_are_utc_unless_an_offset_is_given() -> None:
    assert timestamp("2026-12-31").ToJsonString() == "2026-12-31T00:00:00Z"
    assert timestamp("2026-12-31T17:00:00").ToJsonString() == "2026-12-31T17:00:00Z"
    assert timestamp("2026-12-31T17:00:00+02:00").ToJsonString() == "2026-12-31T15:00:00Z"
    assert timestamp("2026-12-31T17:00:00Z").ToJsonString() == "2026-12-31T17:00:00Z"
    eastern = timezone(timedelta(hours=-5))
    assert timestamp(datetime(2026, 1, 1, 7, tzinfo=eastern)).ToDatetime(UTC).hour == 12
    with pytest.raises(ValueError, match="ISO 8601"):
        timestamp("tomorrow")


def test_update_sets_only_given_fields_and_uses_a_mask_only_to_clear() -> None:
    plain = update_request("t1", status="done", metadata={"k": "v"})
    assert plain.HasField("status") and not plain.HasField("title") and not plain.HasField("update_mask")
    clearing = update_request("t1", title="New", labels=[], due="")
    assert list(clearing.update_mask.paths) == ["title", "labels", "due_date"]
    assert not clearing.HasField("due_date") and clearing.title == "New"


def test_retry_covers_unavailable_and_a_cancel_the_client_did_not_make() -> None:
    """A CANCELLED this client did not cause comes from a stopping server (grpc/grpc#41785)."""
    retry = Retry()
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        assert retry.delay(TaskServiceError(code, "x"), 1) is not None
    for code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
    ):
        assert retry.delay(TaskServiceError(code, "x"), 1) is None
