"""WatchTasks streams held open by a compiled client (`watchdriver.c`), driven from asyncio.

A Python gRPC client reading 1,000 watches on the bench's two cores measured itself, not the
server. The driver is one C thread over libnghttp2 that counts, times and order-checks every
delivery; Python only tells it what to do over a pipe. It is built on first use with the system's
C compiler into the bench cache, under a name that hashes its source, so an edit rebuilds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Self

from taskservice.api import task_service_pb2 as pb
from taskservice.bench.h2load import grpc_frame

SOURCE = Path(__file__).with_name("watchdriver.c")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
CACHE_DIR = Path(".bench-cache")  # the default of `taskservice bench --cache-dir`


class DriverUnavailable(RuntimeError):
    """The driver cannot be built here: the message says what to install."""


def build(cache_dir: Path = CACHE_DIR) -> Path:
    """The driver's executable, compiled into `cache_dir` unless this source was built already."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    binary = cache_dir / f"watchdriver-{key}"
    if binary.exists():
        return binary
    cc = shutil.which("cc")
    if cc is None:
        raise DriverUnavailable(
            "no C compiler (`cc`) to build the bench's watch driver: install one "
            "(Debian/Ubuntu: apt-get install gcc libnghttp2-dev; macOS: xcode-select --install)"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.partial")  # concurrent builds do not clash
    done = subprocess.run(
        [cc, *CFLAGS, "-o", str(partial), str(SOURCE), "-lnghttp2"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        if "nghttp2" in done.stderr:
            raise DriverUnavailable(
                "libnghttp2's headers or library are missing, so the bench's watch driver cannot be "
                "built: `make install` installs them where apt is usable (Debian/Ubuntu: apt-get "
                f"install libnghttp2-dev; macOS: brew install nghttp2).\n{done.stderr.strip()}"
            )
        raise DriverUnavailable(f"cannot build {SOURCE.name}:\n{done.stderr.strip()}")
    partial.replace(binary)
    return binary


@dataclass(frozen=True)
class Status:
    """The driver's progress: streams asked for, open, subscribed (saw a marker), failed; the
    server's per-connection stream limit (-1: none), beyond which streams wait to open."""

    streams: int
    open: int
    subscribed: int
    failed: int
    deliveries: int
    stream_limit: int
    first_failure: str

    @classmethod
    def parse(cls, answer: dict[str, Any]) -> Self:
        return cls(**{f.name: answer[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Report(Status):
    """Counts since the last `reset`; times are `time.monotonic()` seconds (0 before any delivery)."""

    reordered: int
    malformed: int
    p50_us: float
    p99_us: float
    max_us: int
    min_per_stream: int
    max_per_stream: int
    first_delivery: float
    last_delivery: float
    lost: int
    extra: int


class Watches:
    """`count` WatchTasks streams held open by one driver process; see `watching`."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr

    async def _ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(command.encode() + b"\n")
            await self.process.stdin.drain()
            line = await self.process.stdout.readline()
        except (BrokenPipeError, ConnectionResetError):
            line = b""
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"the watch driver exited with {code}: {self.stderr.read_text().strip()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def status(self) -> Status:
        return Status.parse(await self._ask("status"))

    async def reset(self) -> None:
        """Zero deliveries, latencies and reorder counts; each stream's order check carries on."""
        await self._ask("reset")

    async def report(self, events: int) -> Report:
        """Everything since the last reset; `lost` and `extra` against `events` per stream."""
        return Report.parse(await self._ask(f"report {events}"))

    async def close(self) -> None:
        """Cancel every stream and wait for the driver to exit."""
        if self.process.returncode is None:
            with contextlib.suppress(RuntimeError):
                await self._ask("quit")
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@contextlib.asynccontextmanager
async def watching(
    port: int,
    count: int,
    request: pb.WatchTasksRequest,
    token: str | None,
    *,
    per_connection: int,
    cache_dir: Path = CACHE_DIR,
) -> AsyncIterator[Watches]:
    """`count` watches with `request` on 127.0.0.1:`port`, at most `per_connection` streams on each
    connection, open until the block ends."""
    binary = build(cache_dir)
    connections = -(-count // per_connection)
    with tempfile.TemporaryDirectory(prefix="taskservice-watchdriver-") as tmp:
        body, stderr = Path(tmp) / "request", Path(tmp) / "stderr"
        body.write_bytes(grpc_frame(request))
        env = {**os.environ, "WATCHDRIVER_TOKEN": token or ""}
        with stderr.open("wb") as errors:
            process = await asyncio.create_subprocess_exec(
                str(binary), "127.0.0.1", str(port), str(connections), str(per_connection), str(body), str(count),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=errors, env=env,
            )  # fmt: skip
        watches = Watches(process, stderr)
        try:
            yield watches
        finally:
            await watches.close()
