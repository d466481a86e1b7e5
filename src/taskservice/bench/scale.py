"""The scale-out scenario (`taskservice bench --only scale`): write capacity of one SQLite server
against 1, 2 and 3 PostgreSQL replicas (and one replica with `--workers 2`) on one fresh database,
plus the CreateTask p99 at a steady 500 req/s and the cross-replica delivery p99 under that load.

Every deployment shares this machine's cores with PostgreSQL and the load, as a user's first
scale-out test would. The database is created for the run and dropped after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import asyncpg
import grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.bench import clients, h2load
from taskservice.bench.report import Row, Target

CREATE = pb.CreateTaskRequest(title="scale task", labels=["scale"], priority=pb.PRIORITY_HIGH)
# h2load connections x streams for the saturated runs, split evenly over the replicas.
_CLIENTS, _STREAMS = 16, 8
_STEADY_RPS = 500
T = TypeVar("T")


class ServerLike(Protocol):
    """A running `taskservice serve`."""

    @property
    def grpc_port(self) -> int: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Deployment:
    name: str
    replicas: int
    postgres: bool
    workers: int = 1


DEPLOYMENTS = (
    Deployment("SQLite, one server", 1, postgres=False),
    Deployment("PostgreSQL, 1 replica", 1, postgres=True),
    Deployment("PostgreSQL, 2 replicas", 2, postgres=True),
    Deployment("PostgreSQL, 3 replicas", 3, postgres=True),
    Deployment("PostgreSQL, 1 replica --workers 2", 1, postgres=True, workers=2),
)


@dataclass(frozen=True)
class Measured:
    creates_per_s: float
    create_p99_ms: float | None
    updates_per_s: float


class ScaleBench:
    """Runs the deployments one after another; `start_server(name, store_url, extra)` starts one
    `taskservice serve` (the caller's TaskServer), returning an object with `grpc_port` and `stop()`."""

    def __init__(
        self,
        admin_dsn: str,
        workdir: Path,
        seconds: float,
        start_server: Callable[[str, str, tuple[str, ...]], ServerLike],
        say: Callable[[str], None],
    ) -> None:
        self._admin_dsn = admin_dsn
        self._workdir = workdir
        self._seconds = seconds
        self._start_server = start_server
        self._say = say

    def run(self) -> list[Row]:
        rows: list[Row] = []
        measured: dict[str, Measured] = {}
        steady: dict[str, float | None] = {}
        delivery_p99: float | None = None
        for deployment in DEPLOYMENTS:
            with self._deployment(deployment) as servers:
                measured[deployment.name] = self._saturated(servers)
                if deployment.replicas == 2 or not deployment.postgres:
                    p99, delivery = self._steady(servers)
                    steady[deployment.name] = p99
                    if deployment.replicas == 2:
                        delivery_p99 = delivery
                m = measured[deployment.name]
                self._say(
                    f"  {deployment.name}: CreateTask {m.creates_per_s:,.0f}/s (p99 {_ms(m.create_p99_ms)}), "
                    f"UpdateTask {m.updates_per_s:,.0f}/s"
                )
        base = measured[DEPLOYMENTS[0].name]
        for deployment in DEPLOYMENTS:
            m = measured[deployment.name]
            target = None
            if deployment.postgres and deployment.replicas == 1 and deployment.workers == 1:
                target = Target("ratio", ">=", 0.7)
            elif deployment.replicas == 2:
                target = Target("ratio", ">=", 1.0)
            rows.append(
                Row(
                    f"scale: CreateTask, {deployment.name}",
                    "req/s",
                    m.creates_per_s,
                    base.creates_per_s if deployment.postgres else None,
                    target,
                    note=f"h2load {_CLIENTS}x{_STREAMS} over the replicas; p99 {_ms(m.create_p99_ms)}",
                    ratio_of="one SQLite server",
                )
            )
            rows.append(
                Row(
                    f"scale: UpdateTask, {deployment.name}",
                    "req/s",
                    m.updates_per_s,
                    base.updates_per_s if deployment.postgres else None,
                    None,
                    note="Python clients, 64 tasks per replica: client-bound",
                    ratio_of="one SQLite server",
                )
            )
        sqlite_p99 = steady.get(DEPLOYMENTS[0].name)
        two = next(d.name for d in DEPLOYMENTS if d.replicas == 2)
        rows.append(
            Row(
                "scale: CreateTask p99 at 500 req/s, 2 replicas",
                "ms",
                steady.get(two),
                sqlite_p99,
                Target("ratio", "<=", 3.0),
                note=f"SQLite server's p99 at the same rate {_ms(sqlite_p99)}",
                ratio_of="one SQLite server",
            )
        )
        rows.append(
            Row(
                "scale: cross-replica delivery p99 under that load",
                "ms",
                delivery_p99,
                None,
                Target("value", "<=", 100),
                note="created on one replica, watched on the other",
            )
        )
        if measured[two].creates_per_s <= measured[DEPLOYMENTS[1].name].creates_per_s:
            self._say("  note: two replicas did not beat one")
        return rows

    @contextlib.contextmanager
    def _deployment(self, deployment: Deployment) -> Iterator[list[ServerLike]]:
        database = f"taskservice_scale_{uuid.uuid4().hex[:10]}"
        servers: list[ServerLike] = []
        if deployment.postgres:
            _admin(self._admin_dsn, f'CREATE DATABASE "{database}"')
            url = self._admin_dsn.rpartition("/")[0] + "/" + database
        else:
            url = f"sqlite:///{(self._workdir / (database + '.db')).resolve()}"
        try:
            extra: tuple[str, ...] = ("--workers", str(deployment.workers)) if deployment.workers > 1 else ()
            for i in range(deployment.replicas):
                servers.append(self._start_server(f"{database}-{i}", url, extra))
            yield servers
        finally:
            for server in servers:
                server.stop()
            if deployment.postgres:
                _admin(self._admin_dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def _saturated(self, servers: list[ServerLike]) -> Measured:
        per = max(1, _CLIENTS // len(servers))
        load = h2load.Load(self._seconds, clients=per, streams=_STREAMS)
        body = h2load.grpc_frame(CREATE)
        outcomes = _parallel([_h2load_job(s, body, load) for s in servers])
        rate = sum(o.requests_per_s for o in outcomes)
        p99s = [o.p99_ms for o in outcomes if o.p99_ms is not None]
        updates = asyncio.run(self._updates(servers))
        return Measured(rate, max(p99s) if p99s else None, updates)

    async def _updates(self, servers: list[ServerLike]) -> float:
        ids = [await _create_tasks(s.grpc_port, 64) for s in servers]
        rates = await asyncio.gather(
            *(
                clients.updates(s.grpc_port, mine, self._seconds, None)
                for s, mine in zip(servers, ids, strict=True)
            )
        )
        return sum(r.per_second for r in rates)

    def _steady(self, servers: list[ServerLike]) -> tuple[float | None, float | None]:
        """CreateTask at a steady 500 req/s over the servers; with two, the delivery delay from a
        create on the first to its event on the second's watch, during that load."""
        clients_total = 10
        per = max(1, clients_total // len(servers))
        load = h2load.Load(self._seconds, clients=per, streams=4, rps_per_client=_STEADY_RPS // clients_total)
        body = h2load.grpc_frame(CREATE)
        delivery: list[float] = []

        def deliveries() -> None:
            if len(servers) > 1:
                delivery.extend(asyncio.run(_delivery(servers[0], servers[1], self._seconds)))

        jobs: list[Callable[[], h2load.Outcome | None]] = [_h2load_job(s, body, load) for s in servers]
        jobs.append(deliveries)
        outcomes = [r for r in _parallel(jobs) if r is not None]
        p99s = [o.p99_ms for o in outcomes if o.p99_ms is not None]
        delivered = statistics.quantiles(delivery, n=100)[98] if len(delivery) >= 2 else None
        return (max(p99s) if p99s else None), delivered


def _parallel(jobs: list[Callable[[], T]]) -> list[T]:
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: job(), jobs))


def _h2load_job(server: ServerLike, body: bytes, load: h2load.Load) -> Callable[[], h2load.Outcome]:
    return lambda: h2load.run(server.grpc_port, "CreateTask", body, load)


def _admin(dsn: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


async def _create_tasks(port: int, count: int) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        create = channel.unary_unary(
            clients.SERVICE + "CreateTask",
            request_serializer=pb.CreateTaskRequest.SerializeToString,
            response_deserializer=pb.Task.FromString,
        )
        tasks = await asyncio.gather(*(create(CREATE, timeout=30) for _ in range(count)))
    return [task.id for task in tasks]


async def _delivery(writer: ServerLike, watcher: ServerLike, seconds: float) -> list[float]:
    """Milliseconds from sending a CreateTask to one replica until another replica's watch delivers
    its event; one marker every 20 ms for `seconds`."""
    sent: dict[str, float] = {}
    delays: list[float] = []
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{watcher.grpc_port}") as watch_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{writer.grpc_port}") as write_channel,
    ):
        watch = watch_channel.unary_stream(
            clients.SERVICE + "WatchTasks",
            request_serializer=pb.WatchTasksRequest.SerializeToString,
            response_deserializer=pb.TaskEvent.FromString,
        )(pb.WatchTasksRequest(labels=["scale-marker"]))
        create = write_channel.unary_unary(
            clients.SERVICE + "CreateTask",
            request_serializer=pb.CreateTaskRequest.SerializeToString,
            response_deserializer=pb.Task.FromString,
        )
        await watch.wait_for_connection()

        async def read() -> None:
            async for event in watch:
                title = event.task.title
                if title in sent:
                    delays.append((time.monotonic() - sent.pop(title)) * 1000)

        reader = asyncio.create_task(read())
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            title = f"marker {n}"
            n += 1
            sent[title] = time.monotonic()
            await create(pb.CreateTaskRequest(title=title, labels=["scale-marker"]), timeout=10)
            await asyncio.sleep(0.02)
        await asyncio.sleep(1)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await reader
        watch.cancel()
    return delays


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
