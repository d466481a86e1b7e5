"""Bootstrap: wire a store, the service and its transports into a running server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from taskservice.access import auth
from taskservice.access.admission import Admission, StreamQuota
from taskservice.access.ratelimit import RateLimiter
from taskservice.access.receiving import ReceiveSlots
from taskservice.domain.bulk import largest_response
from taskservice.domain.events import EventWindow
from taskservice.domain.paging import PageTokens
from taskservice.domain.service import TaskService
from taskservice.domain.validation import Limits
from taskservice.domain.values import now_us
from taskservice.server.config import Settings, SettingsError
from taskservice.server.events_out import EventsOut, open_events_out
from taskservice.server.readiness import Readiness
from taskservice.store import open_store, redact
from taskservice.store.base import TaskStore
from taskservice.store.instrumented import InstrumentedStore
from taskservice.telemetry import metrics, tracing
from taskservice.telemetry.accesslog import access_log
from taskservice.transport import grpc as grpc_transport
from taskservice.transport import http
from taskservice.transport.body import BodyBudget, BodyLimits
from taskservice.transport.calls import Calls
from taskservice.transport.connect import ConnectTransport
from taskservice.transport.grpc_telemetry import Telemetry
from taskservice.transport.grpcweb import GrpcWebTransport
from taskservice.transport.methods import API_SERVICES, task_service_methods, webhook_service_methods
from taskservice.transport.openapi import document as openapi_document
from taskservice.transport.rest import RestTransport

log = structlog.get_logger(__name__)

_PRUNE_EVERY = 60.0
_IDEMPOTENCY_KEY_TTL_US = 24 * 3600 * 1_000_000
_ANNOUNCED_TOKEN_TTL = 24 * 3600.0
_MAX_PENDING_CALLS = 100_000
_STREAM_LOOKAHEAD_BYTES = 64 * 1024
_MAX_UNREQUESTED_S = 3600
_GC_THRESHOLDS = (5_000, 200, 100)


@dataclass
class Server:
    """A running TaskService: call `stop()` for a graceful shutdown."""

    settings: Settings
    store: TaskStore
    window: EventWindow
    service: TaskService
    grpc_server: grpc.aio.Server
    health: health.aio.HealthServicer
    grpc_port: int = 0
    http_port: int = 0
    events_out: EventsOut | None = None
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        """Health NOT_SERVING, watchers end with UNAVAILABLE, calls in flight get the grace period."""
        if self.shutdown.is_set():
            return
        log.info("server.stopping", grace_period=self.settings.grace_period)
        self.shutdown.set()
        await self.health.enter_graceful_shutdown()
        self.window.close()
        await self.grpc_server.stop(self.settings.grace_period)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.events_out is not None:
            await self.events_out.stop()
        await self.store.close()
        metrics.forget_window(self.window)
        tracing.flush()
        access_log.flush()
        log.info("server.stopped")


async def start(settings: Settings, reuse_port: bool = False) -> Server:
    """Open the store and serve; `reuse_port` lets sibling worker processes share the ports."""
    _check_exposure(settings)
    if largest_response(settings.max_bulk_items) > settings.max_message_bytes:
        raise SettingsError(
            f"--max-bulk-items {settings.max_bulk_items} can need a response of "
            f"{largest_response(settings.max_bulk_items)} bytes, over --max-message-bytes "
            f"{settings.max_message_bytes}: lower the first or raise the second (and clients' receive limit)"
        )
    authenticator = auth.load_authenticator(settings)
    admission = Admission(
        authenticator,
        RateLimiter(settings.rate_limit, settings.rate_burst),
        StreamQuota(settings.max_streams_per_user, settings.max_streams_per_service),
        failed_auth=RateLimiter(settings.max_auth_failures, int(settings.max_auth_failures * 5)),
        receiving=ReceiveSlots(settings.max_receiving_per_user),
    )
    tls = _tls_files(settings)
    tracer = tracing.start()
    store = InstrumentedStore(
        open_store(
            settings.store_url,
            settings.data_dir,
            allow_empty=settings.allow_empty_store,
            timeout=settings.store_timeout,
        ),
        tracer,
    )
    await store.open()
    task_counts = metrics.TaskCounts()
    store.subscribe(task_counts.on_events)  # counted in the background once serving (`_count_tasks`)
    window = EventWindow(store, budget_bytes=settings.event_window_bytes)
    await window.start()
    limits = Limits(bulk_items_max=settings.max_bulk_items)
    service = TaskService(store, window, PageTokens(await store.secret("page-tokens")), limits)
    events_out = await open_events_out(settings, store, service, limits)

    shutdown = asyncio.Event()
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", int(reuse_port)),
        # What a client may send on a call before its handler asks for the message. grpcio's
        # bandwidth probe otherwise raises it to 4 MiB or more for every stream, so calls that are
        # never read (refused, or waiting for the user's receive slot) held that much each. A
        # handler that reads opens the window to the whole message, so uploads do not slow down.
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", _STREAM_LOOKAHEAD_BYTES),
        # Calls that arrived but that the asyncio server has not picked up yet. grpcio's defaults
        # (1,000 / 3,000) left thousands of watches that opened at once hanging, never started.
        ("grpc.server.max_pending_requests", _MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", _MAX_PENDING_CALLS),
        # How long such a call may wait before grpc core cancels it (default 30 s). The asyncio
        # server picks calls up one at a time (a few hundred a second on two busy cores), so of
        # 10,000 watches opened at once the last thousands waited longer and ended CANCELLED.
        ("grpc.server_max_unrequested_time_in_server", _MAX_UNREQUESTED_S),
    ]
    if settings.max_streams_per_connection:
        options.append(("grpc.max_concurrent_streams", settings.max_streams_per_connection))
    # No grpc.aio interceptors: they run on every call and build new handler objects each time
    # (docs/decisions/0004-no-aio-interceptors.md).
    # TaskService's handlers come observed and admitted (calls that admission refuses are counted
    # and logged too); health and reflection are observed as they are registered, and need no token.
    telemetry = Telemetry(tracer=tracer)
    grpc_server = grpc.aio.server(options=options)
    observed_server = telemetry.server(grpc_server)
    api = {**task_service_methods(service), **webhook_service_methods(events_out.webhooks)}
    services = grpc_transport.GrpcTransport(api, admission, telemetry, shutdown).handlers()
    grpc_transport.add_to_server(grpc_server, services)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, observed_server)
    reflection.enable_server_reflection(
        (*services, health.SERVICE_NAME, reflection.SERVICE_NAME), observed_server
    )
    if tls is None:
        grpc_port = grpc_server.add_insecure_port(settings.grpc_addr)
    else:
        grpc_port = grpc_server.add_secure_port(settings.grpc_addr, _grpc_credentials(tls))
    if grpc_port == 0:
        raise OSError(f"cannot listen for gRPC on {settings.grpc_addr}")
    http_sock = http.bind(settings.http_addr, reuse_port)
    await grpc_server.start()

    server = Server(
        settings,
        store,
        window,
        service,
        grpc_server,
        health_servicer,
        events_out=events_out,
        shutdown=shutdown,
    )
    server.grpc_port = grpc_port
    server.http_port = http_sock.getsockname()[1]
    for name in ("", *services):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    readiness = Readiness(
        store, health_servicer, shutdown, ("", *services), interval=settings.health_check_interval
    )
    metrics.watch_window(window)
    body_budget = BodyBudget(settings.http_body_budget_bytes)  # one for every protocol on the port
    grpc_web = GrpcWebTransport(
        api,
        admission,
        shutdown,
        settings.max_message_bytes,
        tracer=tracer,
        body_budget=body_budget,
        body_timeout_s=settings.http_body_timeout,
    )
    calls = Calls(api, admission, shutdown, tracer=tracer)
    bodies = BodyLimits(body_budget, settings.max_message_bytes, settings.http_body_timeout)
    app = http.build_app(
        shutdown,
        readiness,
        grpc_web=grpc_web,
        connect=ConnectTransport(calls, bodies),
        rest=RestTransport(calls, API_SERVICES, bodies, sse_heartbeat=settings.sse_heartbeat),
        rpc_prefixes=[f"/{service.full_name}/" for service in API_SERVICES],
        openapi=openapi_document(API_SERVICES, api),
        cors_origins=settings.cors_origins,
        web_dir=Path(settings.web_dir) if settings.web_dir else None,
    )
    server._tasks.append(asyncio.create_task(http.serve_http(app, http_sock, shutdown, tls)))
    server._tasks.append(asyncio.create_task(_prune_forever(store, settings)))
    server._tasks.append(asyncio.create_task(_count_tasks(task_counts, store)))
    server._tasks.append(asyncio.create_task(readiness.watch()))
    events_out.start()
    _tune_gc()
    return server


def _tune_gc() -> None:
    """Fewer cyclic-GC passes over a server's long-lived objects. Everything built at start-up
    (modules, descriptors, handlers) moves out of the collector's sight, and the young generation is
    collected every 5,000 allocations: rarely enough not to walk thousands of open watches over and
    over, often enough that the reference cycles grpcio leaves behind every unary call are freed in
    short pauses rather than one long one. Evidence: docs/decisions/0003-gc-thresholds.md.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


async def _count_tasks(task_counts: metrics.TaskCounts, store: TaskStore) -> None:
    """Count the tasks by status for the `taskservice_tasks` gauge. It reads a whole index, seconds
    for a million tasks on a cold page cache, so the server serves meanwhile; a failure leaves the
    gauge without series and is logged, and the server runs on."""
    try:
        await task_counts.load(store)
    except Exception as error:  # the store may be down at start; serving does not depend on it
        log.warning("metrics.task_count_failed", error=str(error))
    else:
        log.info("metrics.tasks_counted")


async def _prune_forever(store: TaskStore, settings: Settings) -> None:
    while True:
        try:
            now = now_us()
            removed = await store.prune(
                events_before_us=now - int(settings.event_retention_days * 86_400 * 1_000_000),
                keep_events=settings.event_retention_count,
                keys_before_us=now - _IDEMPOTENCY_KEY_TTL_US,
            )
            if removed:
                log.info("events.pruned", removed=removed)
        except Exception:
            log.exception("events.prune_failed")
        try:
            purged = await store.purge_trash(now_us() - int(settings.trash_days * 86_400 * 1_000_000))
            if purged:
                log.info("trash.purged", purged=purged)
        except Exception:
            log.exception("trash.purge_failed")
        await asyncio.sleep(_PRUNE_EVERY)


def _host(addr: str) -> str:
    return addr.rpartition(":")[0] or "0.0.0.0"


def _is_loopback(addr: str) -> bool:
    host = _host(addr).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_exposure(settings: Settings) -> None:
    """`--auth none` makes everyone an admin: only on loopback, unless the operator insists. Plain
    text off loopback is allowed (a TLS-terminating proxy may sit in front) but warned about."""
    exposed = not (_is_loopback(settings.grpc_addr) and _is_loopback(settings.http_addr))
    if settings.auth == "none" and exposed and not settings.i_understand_this_is_insecure:
        raise SettingsError(
            "--auth none lets anyone act as an administrator; it only runs on loopback addresses "
            "(add --i-understand-this-is-insecure to override)"
        )
    if exposed and not settings.tls_cert:
        log.warning(
            "server.plaintext_off_loopback",
            hint="tokens cross the network in clear text unless a TLS proxy is in front; see --tls-cert",
        )


def _tls_files(settings: Settings) -> http.TlsFiles | None:
    if not (settings.tls_cert or settings.tls_key or settings.tls_client_ca):
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise SettingsError("TLS needs both --tls-cert and --tls-key")
    for path in (settings.tls_cert, settings.tls_key, settings.tls_client_ca):
        if path and not Path(path).is_file():
            raise SettingsError(f"cannot read {path}")
    return http.TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


def _grpc_credentials(tls: http.TlsFiles) -> grpc.ServerCredentials:
    client_ca = Path(tls.client_ca).read_bytes() if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(tls.key).read_bytes(), Path(tls.cert).read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _announce_token(settings: Settings, http_url: str) -> None:
    """With the generated secret on loopback, print a ready admin token: productive in a minute."""
    if settings.auth != "jwt" or not auth.uses_generated_secret(settings):
        return
    if not (_is_loopback(settings.grpc_addr) and _is_loopback(settings.http_addr)):
        return
    token = auth.mint_token(settings, "admin", admin=True, ttl=_ANNOUNCED_TOKEN_TTL)
    print(
        f"Admin token (valid 24 h; mint more with `taskservice token --user NAME`):\n  {token}\n"
        f"Open the board: {http_url}/#token={token}",
        flush=True,
    )


def serve(settings: Settings, reuse_port: bool = False) -> None:
    """Run the server in this process until SIGTERM/SIGINT, on the event loop `--event-loop` names.

    uvloop runs grpc.aio as it is and costs less server CPU per call than asyncio's own loop
    (docs/decisions/0005-uvloop.md)."""
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        runner.run(run(settings, reuse_port))


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("server.uvloop_missing", hint="running on asyncio's event loop")
            return None
        return uvloop.new_event_loop
    return None


async def run(settings: Settings, reuse_port: bool = False) -> None:
    """Start, announce where we listen, and serve until SIGTERM/SIGINT (a second one exits at once)."""
    server = await start(settings, reuse_port)
    grpc_addr = f"{_host(settings.grpc_addr)}:{server.grpc_port}"
    scheme = "https" if settings.tls_cert else "http"
    http_addr = f"{scheme}://{_host(settings.http_addr)}:{server.http_port}"
    log.info(
        "server.listening",
        grpc=grpc_addr,
        http=http_addr,
        store=redact(settings.store_url),
        auth=settings.auth,
    )
    print(f"TaskService is serving gRPC on {grpc_addr} and HTTP on {http_addr}", flush=True)
    _announce_token(settings, http_addr)

    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def on_signal() -> None:
        if stop_requested.is_set():
            log.warning("server.forced_exit")
            sys.exit(1)
        stop_requested.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await stop_requested.wait()
    await server.stop()
