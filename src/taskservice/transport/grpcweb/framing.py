"""The gRPC-Web wire format, with no I/O: each message is a 5-byte prefix (flag byte, big-endian
length) and the message; text mode is the base64 of the same bytes, possibly as several padded
chunks; the call ends with one trailer frame (flag 0x80) holding `grpc-status`, `grpc-message` and
`grpc-status-details-bin` as HTTP/1 header text."""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from urllib.parse import quote

from google.rpc import status_pb2

from taskservice.domain.errors import Code

TRAILER_FLAG = 0x80
COMPRESSED_FLAG = 0x01
_PREFIX = struct.Struct(">BI")
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class ProtocolError(Exception):
    """The request is not well-formed gRPC-Web (answered with INVALID_ARGUMENT, never a stack)."""


def encode_frame(payload: bytes, flag: int = 0) -> bytes:
    return _PREFIX.pack(flag, len(payload)) + payload


def decode_frames(body: bytes) -> list[tuple[int, bytes]]:
    """Split a request body into (flag, payload) frames; a truncated frame is a protocol error."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < _PREFIX.size:
            raise ProtocolError("truncated frame header")
        flag, length = _PREFIX.unpack_from(body, offset)
        offset += _PREFIX.size
        if len(body) - offset < length:
            raise ProtocolError("truncated frame")
        frames.append((flag, body[offset : offset + length]))
        offset += length
    return frames


def decode_text(body: bytes) -> bytes:
    """Base64-decode a text-mode body that may be several independently padded chunks."""
    text = re.sub(rb"\s+", b"", body)
    if len(text) % 4:
        raise ProtocolError("text-mode body is not whole base64 quanta")
    try:
        if b"=" not in text[:-2]:
            return base64.b64decode(text, validate=True)
        # Padding inside the body: each chunk was encoded alone; decode quantum by quantum.
        return b"".join(base64.b64decode(text[i : i + 4], validate=True) for i in range(0, len(text), 4))
    except binascii.Error as error:
        raise ProtocolError("text-mode body is not valid base64") from error


def trailer_block(status: status_pb2.Status) -> bytes:
    """The trailer frame payload: `name: value\\r\\n` lines, message percent-encoded as gRPC requires."""
    lines = [f"grpc-status: {status.code}"]
    if status.message:
        lines.append("grpc-message: " + quote(status.message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"))
    if status.code != Code.OK:
        details = base64.b64encode(status.SerializeToString()).rstrip(b"=").decode()
        lines.append(f"grpc-status-details-bin: {details}")
    return "".join(line + "\r\n" for line in lines).encode()


def parse_timeout(value: str | None) -> float | None:
    """Seconds from a `grpc-timeout` header (e.g. `250m`), or None when absent or malformed."""
    match = _TIMEOUT.match(value or "")
    return int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)] if match else None


@dataclass(frozen=True, slots=True)
class Mode:
    """Binary or text mode, chosen by the request's content type and echoed in the response."""

    text: bool

    @classmethod
    def of(cls, content_type: str) -> Mode | None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media in ("application/grpc-web", "application/grpc-web+proto"):
            return cls(text=False)
        if media in ("application/grpc-web-text", "application/grpc-web-text+proto"):
            return cls(text=True)
        return None

    @property
    def content_type(self) -> str:
        return "application/grpc-web-text+proto" if self.text else "application/grpc-web+proto"

    def wire(self, data: bytes) -> bytes:
        return base64.b64encode(data) if self.text else data
