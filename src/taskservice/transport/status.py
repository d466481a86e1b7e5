"""The one mapping from domain errors to wire statuses (google.rpc.Status with rich details)."""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from taskservice.domain.errors import BulkInterrupted, DomainError, InvalidArgument, ResourceExhausted

BULK_INTERRUPTED = "BULK_STREAM_INTERRUPTED"  # google.rpc.ErrorInfo reason (docs/operations.md)
ERROR_DOMAIN = "taskservice"


def to_status(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status a client sees for a domain error, with BadRequest / RetryInfo details;
    a bulk stream stopped part-way adds an ErrorInfo saying which items were handled."""
    if isinstance(error, BulkInterrupted):
        status = to_status(error.cause)
        status.message = error.message
        info = error_details_pb2.ErrorInfo(
            reason=BULK_INTERRUPTED,
            domain=ERROR_DOMAIN,
            metadata={
                "handled": str(error.handled),
                "stored": str(error.stored),
                "rejected": str(error.rejected),
                "first_stored_id": error.first_id,
                "last_stored_id": error.last_id,
            },
        )
        _attach(status, info)
        return status
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


_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def grpc_code(code: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a google.rpc.Code number (UNKNOWN for a number grpc does not know)."""
    return _GRPC_CODES.get(code, grpc.StatusCode.UNKNOWN)


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: DomainError | None) -> None:
    """End a gRPC call with the error's status (None: INTERNAL, with nothing of the exception)."""
    status = rpc_status.to_status(to_status(error) if error is not None else internal_status())
    # Keep the trailing metadata already set (the request id) next to the status details.
    trailing = tuple(context.trailing_metadata() or ()) + tuple(status.trailing_metadata)
    await context.abort(status.code, status.details, trailing)


def _attach(status: status_pb2.Status, detail: object) -> None:
    packed = any_pb2.Any()
    packed.Pack(detail)  # type: ignore[arg-type]
    status.details.append(packed)
