"""The one mapping from domain errors to wire statuses (google.rpc.Status with rich details)."""

from __future__ import annotations

import math

from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from taskservice.errors import DomainError, InvalidArgument, ResourceExhausted


def to_status(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status a client sees for a domain error, with BadRequest / RetryInfo details."""
    status = status_pb2.Status(code=error.code, message=error.message)
    if isinstance(error, InvalidArgument):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        _attach(status, detail)
    elif isinstance(error, ResourceExhausted) and error.retry_after is not None:
        seconds = max(error.retry_after, 0.0)
        whole = math.floor(seconds)
        delay = duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
        _attach(status, error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def internal_status() -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


def _attach(status: status_pb2.Status, detail: object) -> None:
    packed = any_pb2.Any()
    packed.Pack(detail)  # type: ignore[arg-type]
    status.details.append(packed)
