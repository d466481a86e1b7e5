"""Small helpers for asserting on gRPC answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def expect_code(code: grpc.StatusCode, call: Callable[[], Any]) -> grpc.RpcError:
    error = rpc_error(call)
    assert error.code() == code, f"expected {code}, got {error.code()}: {error.details()}"
    return error


def violations(error: grpc.RpcError) -> dict[str, str]:
    """The google.rpc.BadRequest field violations of an INVALID_ARGUMENT answer, by field."""
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT without google.rpc.Status details"
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def expect_invalid(field: str, call: Callable[[], Any]) -> str:
    error = expect_code(grpc.StatusCode.INVALID_ARGUMENT, call)
    found = violations(error)
    assert field in found, f"no violation for {field!r} in {found}"
    assert "Traceback" not in error.details()
    return found[field]
