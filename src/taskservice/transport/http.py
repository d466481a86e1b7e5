"""The HTTP side: liveness, readiness and Prometheus metrics; gRPC-Web and the board mount here too."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskservice import metrics
from taskservice.readiness import Readiness


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for TLS; with `client_ca`, clients must present a certificate it signed (mTLS)."""

    cert: str
    key: str
    client_ca: str = ""


def build_app(draining: asyncio.Event, readiness: Readiness) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "draining" if draining.is_set() else "ok"})

    async def readyz(_: Request) -> JSONResponse:
        reason = await readiness.check()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    async def prometheus(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", prometheus)]
    )


def bind(addr: str) -> socket.socket:
    """Bind the HTTP socket ourselves so port 0 works and the real port can be reported."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


async def serve_http(
    app: Starlette, sock: socket.socket, stop: asyncio.Event, tls: TlsFiles | None = None
) -> None:
    config = Config()
    if tls is not None:
        config.certfile = tls.cert
        config.keyfile = tls.key
        if tls.client_ca:
            config.ca_certs = tls.client_ca
            config.verify_mode = ssl.CERT_REQUIRED
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 2.0
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
