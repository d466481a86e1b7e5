"""Private NATS (JetStream) and Redis servers on free ports, restartable on their own data, and
readers that fetch everything an export wrote. The shared brokers on 4222/6379 are never touched."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


class BrokerProcess:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        raise NotImplementedError

    def url(self, name: str) -> str:
        """The `--export` URL of the subject or stream `name` on this broker."""
        raise NotImplementedError

    def read(self, name: str) -> list[tuple[int, str, dict[str, Any]]]:
        """(sequence, event type, JSON) of everything exported to `name`, in order."""
        raise NotImplementedError

    def start(self) -> BrokerProcess:
        with (self.data_dir / "broker.log").open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, cwd=self.data_dir)
        _wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Nats(BrokerProcess):
    def command(self) -> list[str]:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        return [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.data_dir / "js")]

    def url(self, subject: str) -> str:
        return f"nats://127.0.0.1:{self.port}/{subject}"

    def read(self, subject: str) -> list[tuple[int, str, dict[str, Any]]]:
        """(Nats-Msg-Id, event type header, JSON) of every message on `subject`, in stream order."""
        import nats

        async def fetch() -> list[tuple[int, str, dict[str, Any]]]:
            nc = await nats.connect(f"nats://127.0.0.1:{self.port}")
            try:
                js = nc.jetstream()
                sub = await js.subscribe(subject, ordered_consumer=True)
                stream = await js.find_stream_name_by_subject(subject)
                total = (await js.stream_info(stream)).state.messages
                found: list[tuple[int, str, dict[str, Any]]] = []
                while len(found) < total:
                    msg = await sub.next_msg(timeout=5)
                    headers = msg.headers or {}
                    found.append(
                        (int(headers["Nats-Msg-Id"]), headers["TaskService-Event-Type"], json.loads(msg.data))
                    )
                return found
            finally:
                await nc.close()

        return asyncio.run(fetch())


class Redis(BrokerProcess):
    def command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]

    def url(self, stream: str) -> str:
        return f"redis://127.0.0.1:{self.port}/{stream}"

    def read(self, stream: str) -> list[tuple[int, str, dict[str, Any]]]:
        """(entry id's sequence, event_type, JSON) of every entry of `stream`, in order."""
        import redis

        client = redis.Redis(port=self.port, decode_responses=True)
        try:
            entries: list[tuple[str, dict[str, str]]] = client.xrange(stream)  # type: ignore[assignment]
        finally:
            client.close()
        return [
            (int(entry_id.split("-")[0]), fields["event_type"], json.loads(fields["event"]))
            for entry_id, fields in entries
        ]


def require(binary: str) -> None:
    if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
        pytest.skip(f"{binary} is not installed (scripts/ci-services.sh installs it)")
