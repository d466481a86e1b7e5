"""Real TaskService processes on free ports, for tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc

from taskservice.access.auth import mint_token
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TASKSERVICE = str(Path(sys.executable).parent / "taskservice")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bearer(token: str) -> list[tuple[str, str]]:
    """Call metadata carrying a token."""
    return [("authorization", f"Bearer {token}")]


class ServerProcess:
    """`taskservice serve` in a subprocess; restartable on the same data dir and ports.

    Servers run with `--auth none` unless the test passes its own `--auth`; `ServerProcess.jwt(...)`
    starts one that requires tokens, and `token(user)` mints them with the server's own secret.
    `ssl_context` is how the readiness check reaches an HTTPS port. `host` is the address both
    ports listen on, and `wrapper` a command the server runs under (`ip netns exec NS`).
    """

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        store: str | None = None,
        env: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        wrapper: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.wrapper = wrapper or []
        self.args = list(args)
        self.store = store
        self.env = env or {}
        self.ssl_context = ssl_context
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self._channels: list[grpc.Channel] = []

    @property
    def grpc_addr(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @classmethod
    def jwt(cls, data_dir: Path, *args: str, **kwargs: object) -> ServerProcess:
        """A server that requires bearer tokens signed with the secret generated in its data dir."""
        return cls(data_dir, "--auth", "jwt", *args, **kwargs)  # type: ignore[arg-type]

    def token(self, user: str, *, admin: bool = False, service: bool = False, ttl: float = 3600.0) -> str:
        """A token for `user`, signed like `taskservice token` does for this server."""
        settings = Settings(data_dir=str(self.data_dir))
        return mint_token(settings, user, admin=admin, service=service, ttl=ttl)

    @property
    def http_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.http_port}"

    def command(self) -> list[str]:
        cmd = [
            *self.wrapper,
            TASKSERVICE,
            "serve",
            "--grpc-addr",
            self.grpc_addr,
            "--http-addr",
            f"{self.host}:{self.http_port}",
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "json",
            "--grace-period",
            "3",
        ]
        if self.store:
            cmd += ["--store", self.store]
        if not any(arg == "--auth" or arg.startswith("--auth=") for arg in self.args):
            cmd += ["--auth", "none"]  # tests that exercise authentication pass their own --auth
            if not self.host.startswith("127."):
                cmd += ["--i-understand-this-is-insecure"]
        return cmd + self.args

    def start(self, timeout: float = 20.0) -> ServerProcess:
        """Start the server and wait until it is healthy. A port still held by a process that just
        died (or briefly taken by another test's client) is waited out, on the same ports: restart
        tests need their server back where their clients reconnect."""
        for _ in range(10):
            try:
                return self._start(timeout)
            except _PortBusy:
                time.sleep(0.5)
        return self._start(timeout)

    def _start(self, timeout: float) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logged = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
        # Temporary files (a memory:// store's database) go under the test's own directory, which
        # pytest removes: a server killed with SIGKILL cannot remove them itself.
        scratch = self.data_dir / "tmp"
        scratch.mkdir(exist_ok=True)
        env["TMPDIR"] = str(scratch)
        env.update(self.env)
        with self.log_path.open("ab") as log:  # the server writes to its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=log, env=env, cwd=str(self.data_dir)
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "Address already in use" in self.log()[logged:]:
                    raise _PortBusy
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(
                    f"{self.http_url}/healthz", timeout=1, context=self.ssl_context
                ) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.grpc_addr)
        self._channels.append(channel)
        return channel

    def stub(self) -> rpc.TaskServiceStub:
        return rpc.TaskServiceStub(self.channel())

    def _close_channels(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        self._close_channels()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown path runs."""
        self._close_channels()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()


class ReplicaSet:
    """Several servers on one store, used like one: `stub()` round-robins calls over all of them,
    the way a client-side load-balanced deployment does. Other attributes are the first replica's."""

    def __init__(self, replicas: list[ServerProcess]) -> None:
        self.replicas = replicas
        self._channels: list[grpc.Channel] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.replicas[0], name)

    def start(self) -> ReplicaSet:
        for replica in self.replicas:
            replica.start()
        return self

    def channel(self) -> grpc.Channel:
        targets = ",".join(r.grpc_addr for r in self.replicas)
        channel = grpc.insecure_channel(f"ipv4:{targets}", options=[("grpc.lb_policy_name", "round_robin")])
        self._channels.append(channel)
        return channel

    def stub(self) -> rpc.TaskServiceStub:
        return rpc.TaskServiceStub(self.channel())

    def log(self) -> str:
        return "\n".join(r.log() for r in self.replicas)

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()
        for replica in self.replicas:
            replica.stop()

    def kill(self) -> None:
        for replica in self.replicas:
            replica.kill()


class _PortBusy(Exception):
    """The server exited because one of its ports was still in use."""
