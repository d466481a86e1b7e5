"""A raw HTTP/2 client that sends gRPC request bodies without ever finishing them: what a hostile
client does to make a server buffer. Used by the memory-bound tests."""

from __future__ import annotations

import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class StalledUploads:
    """One HTTP/2 connection with `streams` calls to `path`, each announcing a `message_bytes`
    message and sending all but its last byte, then holding the stream open (no END_STREAM)."""

    def __init__(
        self, host: str, port: int, path: str, streams: int, message_bytes: int, token: str = ""
    ) -> None:
        self.sock = socket.create_connection((host, port))
        self.token = token
        self.closed = False
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.path = path
        self.authority = f"{host}:{port}"
        self.pending: dict[int, memoryview] = {}
        self.reset: set[int] = set()
        for _ in range(streams):
            self._open(message_bytes)
        self._flush()

    def _open(self, message_bytes: int) -> None:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", self.path),
                (":authority", self.authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *([("authorization", f"Bearer {self.token}")] if self.token else []),
            ],
        )
        body = b"\x00" + message_bytes.to_bytes(4, "big") + b"\x0a" * (message_bytes - 1)
        self.pending[stream_id] = memoryview(body)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.sock.settimeout(10)  # sent within the flow-control window, so the server reads it
            try:
                self.sock.sendall(data)
            except OSError:  # the server closed the connection
                self.closed = True

    def pump(self, seconds: float) -> int:
        """Send what flow control allows and read the server's frames for `seconds`; the bytes of
        body still unsent (the server stopped granting window, or reset the streams)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.closed:
            sent = False
            for stream_id, rest in list(self.pending.items()):
                if stream_id in self.reset:
                    del self.pending[stream_id]
                    continue
                try:
                    window = min(
                        self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
                    )
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                    del self.pending[stream_id]
                    continue
                if window > 0 and rest:
                    chunk = rest[: min(window, len(rest))]
                    self.conn.send_data(stream_id, chunk.tobytes())
                    self.pending[stream_id] = rest[len(chunk) :]
                    sent = True
            self._flush()
            self.sock.settimeout(0.001 if sent else 0.05)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.StreamReset | h2.events.StreamEnded):
                    self.reset.add(event.stream_id)
            self._flush()
        return sum(len(rest) for rest in self.pending.values())

    def close(self) -> None:
        self.sock.close()
