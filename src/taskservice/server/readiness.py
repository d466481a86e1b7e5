"""Readiness: the server is ready while its store answers and it is not draining.

`/readyz` asks on demand; a background loop asks twice per `health_check_interval`, and each ping
may take half of it, so a store that stops answering (a partition drops packets silently) is
reported within one interval. Both update the gRPC health service, so load balancers probing gRPC
health and Kubernetes probing `/readyz` see the same answer, and the `taskservice_ready` gauge.
"""

from __future__ import annotations

import asyncio

import structlog
from grpc_health.v1 import health, health_pb2

from taskservice.store.base import TaskStore
from taskservice.telemetry import metrics

log = structlog.get_logger(__name__)


class Readiness:
    def __init__(
        self,
        store: TaskStore,
        health_servicer: health.aio.HealthServicer,
        draining: asyncio.Event,
        services: tuple[str, ...],
        *,
        interval: float,
    ) -> None:
        self._store = store
        self._every = interval / 2
        self._health = health_servicer
        self._draining = draining
        self._services = services
        self._ready: bool | None = None

    async def check(self) -> str | None:
        """Why the server is not ready (None: it is ready); flips gRPC health when the answer changes."""
        if self._draining.is_set():
            metrics.ready.set(0)
            return "draining"
        try:
            await asyncio.wait_for(self._store.ping(), self._every)
        except Exception as error:
            await self._set(False, str(error) or type(error).__name__)
            return "store unreachable"
        await self._set(True)
        return None

    async def _set(self, ready: bool, error: str = "") -> None:
        if ready == self._ready or self._draining.is_set():
            return
        if ready:
            log.info("store.ready" if self._ready is None else "store.recovered")
        else:
            log.warning("store.unreachable", error=error)
        self._ready = ready
        metrics.ready.set(1 if ready else 0)
        status = (
            health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._services:
            await self._health.set(name, status)

    async def watch(self) -> None:
        """Check twice per interval until cancelled: the fault begins at worst just after a ping
        succeeded, and the next one starts half an interval later and gives up half an interval
        after that."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.check()
            await asyncio.sleep(max(0.0, started + self._every - loop.time()))
