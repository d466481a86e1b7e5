"""The HTTP side: liveness, readiness, Prometheus metrics, the API (gRPC-Web and Connect at the RPC
paths, REST under /v1, with CORS), its OpenAPI document and reference page, and the board."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from taskservice.server.readiness import Readiness
from taskservice.telemetry import metrics
from taskservice.transport.connect import ConnectTransport
from taskservice.transport.grpcweb import GrpcWebTransport
from taskservice.transport.rest import RestTransport

# Request headers gRPC-Web clients send (grpc-web and connect-web) besides custom metadata.
_GRPC_WEB_HEADERS = ("content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "authorization")
_GRPC_WEB_EXPOSED = ("grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id")
_REST_EXPOSED = ("etag", "retry-after", "x-request-id")

_DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TaskService API</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><div id="app"></div>
<script src="/docs/scalar.js"></script>
<script>Scalar.createApiReference('#app', {url: '/openapi.json', withDefaultFonts: false})</script>
</body></html>
"""
_DOCS_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TaskService API</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem">
<h1>TaskService API</h1>
<p>The API reference page is built with the board (<code>make web</code>), which has not been built.
The OpenAPI document it shows is at <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""

_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TaskService</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem">
<h1>TaskService is running</h1>
<p>The task board has not been built, so there is nothing to show here yet.
It is built by <code>make install</code> when Node.js (20.19 or newer) and npm are installed;
or build it by hand with <code>make web</code>.</p>
<p>The gRPC-Web API, <code>/healthz</code> and <code>/metrics</code> work without it.</p>
</body></html>
"""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for TLS; with `client_ca`, clients must present a certificate it signed (mTLS)."""

    cert: str
    key: str
    client_ca: str = ""


def default_web_dir() -> Path:
    """`web/dist` of the source tree this package runs from (an editable install)."""
    return Path(__file__).resolve().parents[3] / "web" / "dist"


def build_app(
    draining: asyncio.Event,
    readiness: Readiness,
    *,
    grpc_web: GrpcWebTransport | None = None,
    connect: ConnectTransport | None = None,
    rest: RestTransport | None = None,
    rpc_prefixes: Sequence[str] = (),
    openapi: dict[str, Any] | None = None,
    cors_origins: Sequence[str] = (),
    web_dir: Path | None = None,
) -> Starlette:
    """The HTTP app. `rpc_prefixes` (`/package.Service/`) are answered by gRPC-Web or Connect, as the
    request's content type says; `rest` answers its routes' first segments (`/v1/`)."""
    web_dir = web_dir or default_web_dir()

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "draining" if draining.is_set() else "ok"})

    async def readyz(_: Request) -> JSONResponse:
        reason = await readiness.check()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    async def prometheus(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)

    api_paths: list[tuple[str, ASGIApp]] = []
    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
    ]
    if grpc_web is not None:
        prefixes = rpc_prefixes or grpc_web.service_prefixes
        rpc = _with_cors(_rpc(grpc_web, connect), cors_origins, ["POST", "GET"], _GRPC_WEB_EXPOSED)
        api_paths += [(prefix, rpc) for prefix in prefixes]
    if rest is not None:
        methods = ["GET", "POST", "PATCH", "DELETE", "PUT"]
        api = _with_cors(rest, cors_origins, methods, _REST_EXPOSED)
        api_paths += [(prefix, api) for prefix in rest.prefixes]
    if openapi is not None:
        document = openapi

        async def openapi_json(_: Request) -> JSONResponse:
            return JSONResponse(document)

        async def docs(_: Request) -> HTMLResponse:
            if (web_dir / "docs" / "scalar.js").is_file():
                return HTMLResponse(_DOCS)
            return HTMLResponse(_DOCS_NOT_BUILT, status_code=404)

        routes += [Route("/openapi.json", openapi_json), Route("/docs", docs)]
    app = Starlette(routes=routes, middleware=[Middleware(_ApiPaths, paths=api_paths)])
    # The board answers whatever no route claims, so routes added later (e.g. /metrics) always win.
    app.router.default = _board(web_dir)
    return app


class _ApiPaths:
    """Requests under the API's prefixes go straight to their transport, ahead of Starlette's router:
    its path patterns do not match every path a client may send (an encoded newline in a task id),
    and the API answers every path under its prefixes itself, with its own errors."""

    def __init__(self, app: ASGIApp, paths: Sequence[tuple[str, ASGIApp]]) -> None:
        self._app = app
        self._paths = list(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix, target in self._paths:
                if path.startswith(prefix):
                    await target(scope, receive, send)
                    return
        await self._app(scope, receive, send)


def _rpc(grpc_web: GrpcWebTransport, connect: ConnectTransport | None) -> ASGIApp:
    """One RPC path, two protocols: gRPC-Web by its content type, Connect for the rest."""
    return grpc_web if connect is None else _RpcProtocols(grpc_web, connect)


class _RpcProtocols:
    """An ASGI app (a class, so Starlette's Route passes it the raw ASGI call) choosing the protocol."""

    def __init__(self, grpc_web: GrpcWebTransport, connect: ConnectTransport) -> None:
        self._grpc_web = grpc_web
        self._connect = connect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = b""
        for key, value in scope["headers"]:
            if key.lower() == b"content-type":
                content_type = value.lower()
        if content_type.startswith(b"application/grpc-web"):
            await self._grpc_web(scope, receive, send)
        else:
            await self._connect(scope, receive, send)


def _with_cors(app: ASGIApp, origins: Sequence[str], methods: list[str], exposed: Sequence[str]) -> ASGIApp:
    """Answer preflights and mark responses for the allow-listed origins only (none by default)."""
    if not origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=list(origins),
        allow_methods=methods,
        # Any requested header: a client may send its own metadata keys as headers.
        allow_headers=["*", *_GRPC_WEB_HEADERS],
        expose_headers=list(exposed),
        max_age=600,
    )


def _board(web_dir: Path) -> ASGIApp:
    if (web_dir / "index.html").is_file():
        return StaticFiles(directory=web_dir, html=True)

    async def not_built(request: Request) -> Response:
        if request.url.path == "/":
            return HTMLResponse(_NOT_BUILT, status_code=404)
        return PlainTextResponse("Not Found", status_code=404)

    return Route("/{path:path}", not_built)


_READ_AHEAD_CHUNKS = 4


def bind(addr: str, reuse_port: bool = False) -> socket.socket:
    """Bind the HTTP socket ourselves so port 0 works and the real port can be reported.
    `reuse_port`: several worker processes listen on the same port and the kernel spreads clients."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
    # Body chunks (64 KiB each) hypercorn reads ahead of a request whose body the app is not
    # reading yet (refused, or waiting for the user's receive slot); then TCP pushes back.
    config.max_app_queue_size = _READ_AHEAD_CHUNKS
    try:
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    finally:
        sock.close()  # hypercorn serves a duplicate of it (fd://); the bound socket is ours to close
