"""gRPC-Web on the HTTP port: `framing` is the wire format, `app` the ASGI adapter."""

from taskservice.transport.grpcweb.app import GrpcWebTransport
from taskservice.transport.grpcweb.framing import (
    Mode,
    ProtocolError,
    decode_frames,
    decode_text,
    encode_frame,
)

__all__ = ["GrpcWebTransport", "Mode", "ProtocolError", "decode_frames", "decode_text", "encode_frame"]
