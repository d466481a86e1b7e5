"""Unary load from h2load (nghttp2's HTTP/2 load generator), sending pre-encoded gRPC frames (or
plain HTTP requests to the HTTP port: REST and Connect).

A gRPC unary call is an HTTP/2 POST whose body is one length-prefixed message, so h2load can drive
it with a fixed body: a compiled client that costs the server's two cores little, where a Python
client would measure itself. h2load does not read gRPC trailers, so the bench checks each body once
with a real gRPC client before the load (`scenarios.check_call`).
"""

from __future__ import annotations

import re
import shutil
import statistics
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message

SERVICE = "taskservice.TaskService"


class H2LoadMissing(RuntimeError):
    pass


def executable() -> str:
    path = shutil.which("h2load")
    if path is None:
        raise H2LoadMissing(
            "h2load is not installed: `make install` installs Debian's nghttp2-client when apt is "
            "available; otherwise install nghttp2 (it provides h2load) with your package manager"
        )
    return path


def grpc_frame(message: Message) -> bytes:
    """The HTTP/2 body of a unary call: uncompressed flag, big-endian length, message."""
    data = message.SerializeToString()
    return struct.pack(">BI", 0, len(data)) + data


def grpc_stream(message: Message, count: int) -> bytes:
    """The HTTP/2 body of a client-streaming call that sends `message` `count` times: a request
    stream is its length-prefixed messages one after another, so h2load can send a whole
    BulkCreateTasks stream as one fixed body."""
    return grpc_frame(message) * count


def median_outcome(outcomes: list[Outcome]) -> Outcome:
    """Each figure's median over rounds (one slow round on a shared machine does not decide)."""

    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    return Outcome(
        requests_per_s=statistics.median(o.requests_per_s for o in outcomes),
        succeeded=sum(o.succeeded for o in outcomes),
        failed=sum(o.failed for o in outcomes),
        p50_ms=median([o.p50_ms for o in outcomes]),
        p99_ms=median([o.p99_ms for o in outcomes]),
    )


@dataclass(frozen=True)
class Load:
    """How h2load drives a server: clients (connections) x streams each, for `seconds`."""

    seconds: float
    clients: int = 8
    streams: int = 16
    rps_per_client: int = 0  # 0: as fast as possible; otherwise a steady rate per client


@dataclass(frozen=True)
class Outcome:
    requests_per_s: float
    succeeded: int
    failed: int
    p50_ms: float | None = None
    p99_ms: float | None = None


def run(port: int, method: str, body: bytes, load: Load, token: str | None = None) -> Outcome:
    """Call gRPC `method` with `body` under `load`; latency percentiles come from h2load's request log."""
    headers = ["content-type: application/grpc", "te: trailers"]
    return _run(f"http://127.0.0.1:{port}/{SERVICE}/{method}", body, headers, load, token)


def run_http(
    port: int,
    path: str,
    load: Load,
    token: str | None = None,
    *,
    body: bytes | None = None,
    content_type: str = "",
) -> Outcome:
    """GET `path` (or POST `body`) on the HTTP port under `load`, over HTTP/2 without TLS (h2c)."""
    headers = [f"content-type: {content_type}"] if content_type else []
    return _run(f"http://127.0.0.1:{port}{path}", body, headers, load, token)


def _run(url: str, body: bytes | None, headers: list[str], load: Load, token: str | None) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="taskservice-h2load-") as tmp:
        log = Path(tmp) / "requests.log"
        cmd = [
            executable(),
            url,
            "-c", str(load.clients),
            "-m", str(load.streams),
            "-t", "1",
            "-D", f"{int(load.seconds * 1000)}ms",
            "--warm-up-time", "500ms",
            "--log-file", str(log),
        ]  # fmt: skip
        if body is not None:
            data = Path(tmp) / "body"
            data.write_bytes(body)
            cmd += ["-d", str(data)]
        for header in headers:
            cmd += ["-H", header]
        if token:
            cmd += ["-H", f"authorization: Bearer {token}"]
        if load.rps_per_client:
            cmd += ["--rps", str(load.rps_per_client)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=load.seconds + 60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"h2load failed ({done.returncode}): {done.stderr or done.stdout}")
        return _parse(done.stdout, log)


def _parse(output: str, log: Path) -> Outcome:
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", output)
    if rate is None or counts is None:
        raise RuntimeError(f"cannot read h2load's summary:\n{output}")
    durations = sorted(
        int(fields[2]) / 1000
        for fields in (line.split("\t") for line in log.read_text().splitlines())
        if len(fields) >= 3 and fields[1] == "200"
    )
    p50 = p99 = None
    if len(durations) >= 2:
        cuts = statistics.quantiles(durations, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    return Outcome(float(rate.group(1)), int(counts.group(1)), int(counts.group(2)), p50, p99)
