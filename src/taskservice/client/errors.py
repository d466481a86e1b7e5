"""The one exception the client raises: a gRPC status turned into plain, inspectable values."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"
_CODE_NAMES: dict[int, str] = {status.value[0]: status.name for status in grpc.StatusCode}


def code_name(code: int) -> str:
    """The name of a google.rpc.Code number, as in BulkError.code and TaskResult.code."""
    return _CODE_NAMES.get(code, str(code))


@dataclass
class TaskServiceError(Exception):
    """A call failed with `code` (a grpc.StatusCode). `violations` lists (field, description) pairs
    from google.rpc.BadRequest; `retry_after` is the server's RetryInfo delay in seconds, if any."""

    code: grpc.StatusCode
    message: str
    violations: list[tuple[str, str]] = field(default_factory=list)
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> TaskServiceError:
        """Read code, message and rich details from a sync or asyncio RpcError."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        message = (error.details() if hasattr(error, "details") else None) or ""
        result = cls(code or grpc.StatusCode.UNKNOWN, message)
        trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
        for key, value in trailers or ():
            if key == _DETAILS_KEY and isinstance(value, bytes):
                result._read_details(value)
        return result

    def _read_details(self, encoded: bytes) -> None:
        status = status_pb2.Status.FromString(encoded)
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            retry_info = error_details_pb2.RetryInfo()
            if detail.Unpack(bad_request):
                self.violations += [(v.field, v.description) for v in bad_request.field_violations]
            elif detail.Unpack(retry_info):
                self.retry_after = retry_info.retry_delay.ToTimedelta().total_seconds()
