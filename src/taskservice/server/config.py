"""Server settings: one object, read once at start-up from flags and TASKSERVICE_* variables.

Each field below is a `taskservice serve` flag (`grpc_addr` → `--grpc-addr`) and an environment
variable (`TASKSERVICE_GRPC_ADDR`); the CLI builds its options from this list, so a new setting is
added here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class SettingsError(ValueError):
    """A setting that cannot work (unreadable key file, unsafe combination); shown to the operator."""


def _setting(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class Settings:
    grpc_addr: str = _setting("127.0.0.1:50051", "gRPC listen address (host:port; port 0 picks a free one)")
    http_addr: str = _setting(
        "127.0.0.1:8080", "HTTP listen address: /healthz, /metrics, gRPC-Web and the board"
    )
    store: str = _setting("", "sqlite:///PATH, memory:// or postgresql://… (default: sqlite in the data dir)")
    store_timeout: float = _setting(
        5.0,
        "seconds a call waits on PostgreSQL (a connection, its statements, its commit) before it fails "
        "UNAVAILABLE; a partition drops packets silently, and without a bound calls would hang",
    )
    data_dir: str = _setting("./data", "folder for the embedded database and generated keys")
    allow_empty_store: bool = _setting(
        False, "start on a zero-byte SQLite database even where a server ran before (a new, empty store)"
    )
    auth: str = _setting(
        "jwt", "jwt: bearer tokens required; none: everyone is admin (development only)", ("jwt", "none")
    )
    jwt_secret_file: str = _setting(
        "", "HS256 shared secret (32+ bytes); default: generated once into the data dir"
    )
    jwt_public_key_file: str = _setting("", "PEM public key for RS256/ES256 tokens")
    jwt_jwks_file: str = _setting("", "JWKS file of RS256/ES256 public keys, chosen by the token's kid")
    jwt_issuer: str = _setting("", "required `iss` claim (checked when set)")
    jwt_audience: str = _setting("", "required `aud` claim (checked when set)")
    jwt_leeway: float = _setting(30.0, "seconds of clock skew allowed on exp/nbf")
    i_understand_this_is_insecure: bool = _setting(False, "allow --auth none on a non-loopback address")
    rate_limit: float = _setting(0.0, "requests (and stream messages) per second per user; 0: off")
    rate_burst: int = _setting(0, "requests a user may make at once above the rate (0: one second's worth)")
    max_auth_failures: float = _setting(
        50.0,
        "failed authentications per second one client address may make (bursts of 5x) before tokens "
        "this server has not verified are refused from it with RESOURCE_EXHAUSTED; 0: off",
    )
    tls_cert: str = _setting("", "PEM certificate chain: serve gRPC and HTTP over TLS")
    tls_key: str = _setting("", "PEM private key of --tls-cert")
    tls_client_ca: str = _setting("", "PEM CA bundle: require client certificates signed by it (mTLS)")
    max_streams_per_connection: int = _setting(
        0,
        "concurrent calls on one HTTP/2 connection (0: no limit; grpcio clients fail calls over it "
        "with REFUSED_STREAM or queue them, so the per-user quotas below bound clients instead)",
    )
    max_streams_per_user: int = _setting(
        100, "concurrent streaming calls one user may hold open (admins: no limit)"
    )
    max_streams_per_service: int = _setting(
        10_000, "concurrent streaming calls a user whose token has the `service` role may hold open"
    )
    max_receiving_per_user: int = _setting(
        16,
        "request messages one user's calls may be receiving at once; more wait their turn "
        "(bounds what unfinished messages hold in memory; admins: no limit; 0: no limit)",
    )
    max_bulk_items: int = _setting(100_000, "most tasks one BulkCreateTasks stream may carry")
    log_level: str = _setting("info", "log level", ("debug", "info", "warning", "error"))
    log_format: str = _setting(
        "auto", "log format (auto: json unless on a terminal)", ("auto", "json", "console")
    )
    grace_period: float = _setting(10.0, "seconds calls in flight may take to finish on SIGTERM")
    event_retention_days: float = _setting(7.0, "days of events kept for after_sequence resume")
    event_retention_count: int = _setting(1_000_000, "most events kept for after_sequence resume")
    trash_days: float = _setting(
        30.0, "days a deleted task stays in the trash (UndeleteTask) before it is purged"
    )
    event_window_bytes: int = _setting(
        64 * 1024 * 1024,
        "memory the shared window of recent events may hold (estimated); watchers behind it read the "
        "event log",
    )
    http_body_budget_bytes: int = _setting(
        64 * 1024 * 1024,
        "request-body bytes the HTTP port holds at once, all calls together; a body that does not "
        "fit is refused with RESOURCE_EXHAUSTED",
    )
    http_body_timeout: float = _setting(30.0, "seconds a gRPC-Web request body may take to arrive")
    max_message_bytes: int = _setting(4 * 1024 * 1024, "largest request or response message")
    health_check_interval: float = _setting(
        5.0,
        "readiness (/readyz and gRPC health) turns off at most this many seconds after the store stops "
        "answering: the store is pinged twice per interval, each ping given half of it",
    )
    cors_origin: tuple[str, ...] = _setting(
        (), "origin allowed to call gRPC-Web from another site (repeatable or comma-separated; * = any)"
    )
    sse_heartbeat: float = _setting(
        15.0, "seconds between keep-alive comments on an idle Server-Sent Events stream (/v1/tasks:watch)"
    )
    web_dir: str = _setting(
        "", "folder with the built board served at / (default: web/dist of the source tree)"
    )
    event_loop: str = _setting(
        "uvloop",
        "asyncio event loop: uvloop (faster; asyncio when not installed) or asyncio",
        ("uvloop", "asyncio"),
    )
    webhook_allow_private: bool = _setting(
        False, "let webhooks reach loopback, link-local and private addresses (local receivers, tests)"
    )
    webhook_retry_window: float = _setting(
        86_400.0, "seconds a webhook's failing event is retried before the webhook is disabled"
    )
    webhook_secret_grace: float = _setting(
        86_400.0, "seconds a rotated webhook secret keeps signing beside the new one"
    )
    export: tuple[str, ...] = _setting(
        (),
        "export every event to nats://HOST:PORT/SUBJECT (JetStream) or redis://HOST:PORT/STREAM (repeatable)",
    )
    workers: int = _setting(
        1, "server processes sharing the gRPC and HTTP ports (SO_REUSEPORT); above 1 needs PostgreSQL"
    )

    @property
    def store_url(self) -> str:
        return self.store or "sqlite:///tasks.db"

    @property
    def cors_origins(self) -> list[str]:
        """The CORS allow-list, with comma-separated values split."""
        return [o.strip() for value in self.cors_origin for o in value.split(",") if o.strip()]

    @classmethod
    def options(cls) -> list[dataclasses.Field[Any]]:
        return list(dataclasses.fields(cls))


def env_name(field_name: str) -> str:
    return "TASKSERVICE_" + field_name.upper()
