"""`taskservice soak`: a long run of mixed load against real servers, with checks at the end.

Several users write at a fixed rate (creates, updates, deletes, gets, lists, bulk streams and process
streams), on their own tasks and, as members, on the tasks of a few shared projects, where teammates
update and delete each other's tasks. Hundreds of watchers follow their user's label or a project,
drop at random and resume with `after_sequence`. On PostgreSQL two replicas serve behind client-side
round-robin; a replica is killed with SIGKILL and restarted at 40% of the run, and, when the soak
runs its own PostgreSQL cluster, the database restarts at 70%. The shared system PostgreSQL is
never restarted.

At the end (`bench/soak_checks.py`), read straight from the database:
- every acknowledged write is there as acknowledged (a write whose answer was lost is not judged);
- every watcher's history equals the event log over its span (same events, same order, once each);
- the server's RSS and open file descriptors grew at most 10% over the second half (judged on runs
  of 10 minutes or more: shorter ones measure the caches warming up);
- no call ended INTERNAL or UNKNOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import grpc.aio

from taskservice.access.auth import mint_token
from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.bench import soak_checks as checks
from taskservice.bench.soak_checks import Expect, WatcherLog, event_key
from taskservice.server.config import Settings

FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
_SAMPLE_EVERY_S = 2.0
_MAX_IN_FLIGHT = 400
# Operation mix: (name, weight).
_MIX = (
    ("create", 25),
    ("update", 25),
    ("delete", 8),
    ("get", 15),
    ("list", 12),
    ("bulk", 5),
    ("process", 10),
)
# Share of the calls made in a project (by a member) rather than in a user's own space, and of the
# watchers that follow a project rather than their user's label.
_PROJECT_SHARE = 0.4
_PROJECT_WATCHERS = 0.25
# Each project: its owner, up to this many editors and one viewer, taken from the users in turn.
_EDITORS = 3


@dataclass(frozen=True)
class SoakConfig:
    duration_s: float = 1800.0
    store: str = "sqlite"  # sqlite | postgres
    postgres_url: str = ""  # admin URL of a shared server: a database is created and dropped there
    private_postgres: bool = False  # run an own cluster (then the database is restarted too)
    rate: float = 100.0  # operations per second, all users together
    users: int = 8
    watchers: int = 200
    out_dir: Path = Path("soak-results")
    seed: int = 1


@dataclass(frozen=True)
class _Project:
    """A shared project: its owner and editors write, its viewers read and watch."""

    id: str
    writers: tuple[str, ...]  # the owner first
    viewers: tuple[str, ...]

    @property
    def members(self) -> tuple[str, ...]:
        return self.writers + self.viewers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _taskservice() -> str:
    return shutil.which("taskservice") or str(Path(sys.executable).parent / "taskservice")


class _Server:
    """One `taskservice serve` process, restartable on the same ports and data dir."""

    def __init__(self, workdir: Path, store_url: str, secret_file: Path) -> None:
        self.workdir = workdir
        self.store_url = store_url
        self.secret_file = secret_file
        self.grpc_port, self.http_port = _free_port(), _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "server.log").open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
        command = [
            _taskservice(),
            "serve",
            *("--grpc-addr", self.grpc_addr, "--http-addr", f"127.0.0.1:{self.http_port}"),
            *("--data-dir", str(self.workdir), "--store", self.store_url),
            *("--auth", "jwt", "--jwt-secret-file", str(self.secret_file)),
            *("--log-format", "json", "--log-level", "warning", "--grace-period", "3"),
        ]
        self.proc = subprocess.Popen(command, stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self.workdir}/server.log"
                )
            url = f"http://127.0.0.1:{self.http_port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy; see {self.workdir}/server.log")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class _PrivateCluster:
    """initdb + pg_ctl on a free port in a temporary folder (as root, run as the postgres user)."""

    def __init__(self) -> None:
        found = shutil.which("pg_ctl")
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if found:
            self.bindir = Path(found).parent
        elif versions:
            self.bindir = versions[-1].parent
        else:
            raise RuntimeError("--private-postgres needs the PostgreSQL server binaries (initdb, pg_ctl)")
        self.root = Path(tempfile.mkdtemp(prefix="taskservice-soak-pg-"))
        self.data = self.root / "pgdata"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if not self.data.exists():
            if os.geteuid() == 0:
                shutil.chown(self.root, "postgres", "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "pg.log"), "-o", options, "-w", "start"
        )

    def restart(self) -> None:
        """Stop (fast: connections are cut) and start again, with the same options and log file."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class Soak:
    def __init__(self, config: SoakConfig, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.random = random.Random(config.seed)
        self.workdir = Path(tempfile.mkdtemp(prefix="taskservice-soak-"))
        self.servers: list[_Server] = []
        self.cluster: _PrivateCluster | None = None
        self.admin_url = ""
        self.database_url = ""
        self.sqlite_path: Path | None = None
        self.users = [f"soak-{n}" for n in range(config.users)]
        self.tokens: dict[str, str] = {}
        self.projects: list[_Project] = []
        self.ledger: dict[str, Expect] = {}
        # Live acknowledged task ids by space: a user's name for their own tasks, else a project id.
        self.pools: dict[str, list[str]] = {user: [] for user in self.users}
        self.busy: set[str] = set()
        self.calls: list[tuple[float, str, float, str]] = []  # (at s, op, latency ms, status)
        self.project_calls = 0
        self.teammate_writes = 0  # updates and deletes acknowledged to a member other than the creator
        self.samples: list[tuple[float, int, int]] = []  # (at s, rss bytes, open fds)
        self.watchers: list[WatcherLog] = []
        self.faults: list[tuple[float, str]] = []
        self.started = 0.0
        self.stop = asyncio.Event()

    # -- setup and teardown --------------------------------------------------------------------

    def _store_url(self) -> str:
        if self.config.store == "sqlite":
            self.sqlite_path = self.workdir / "tasks.db"
            return f"sqlite:///{self.sqlite_path}"
        if self.config.private_postgres:
            self.cluster = _PrivateCluster()
            self.cluster.start()
            self.admin_url = self.cluster.url
        else:
            self.admin_url = self.config.postgres_url or "postgresql://postgres@127.0.0.1:5432/postgres"
        name = "taskservice_soak_" + uuid.uuid4().hex[:10]
        asyncio.run(self._admin(f"CREATE DATABASE {name}"))
        self.database_url = self.admin_url.rpartition("/")[0] + "/" + name
        return self.database_url

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def setup(self) -> None:
        secret = self.workdir / "jwt-secret"
        secret.write_text(secrets.token_urlsafe(48) + "\n")
        secret.chmod(0o600)
        store_url = self._store_url()
        replicas = 1 if self.config.store == "sqlite" else 2
        self.servers = [_Server(self.workdir / f"server{n}", store_url, secret) for n in range(replicas)]
        for server in self.servers:
            server.start()
        settings = Settings(jwt_secret_file=str(secret))
        self.tokens = {
            user: mint_token(settings, user, ttl=self.config.duration_s + 3600) for user in self.users
        }

    def teardown(self) -> None:
        for server in self.servers:
            server.stop()
        if self.database_url:
            name = self.database_url.rpartition("/")[2]
            with contextlib.suppress(Exception):
                asyncio.run(self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        if self.cluster is not None:
            self.cluster.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def channel(self) -> grpc.aio.Channel:
        if len(self.servers) == 1:
            return grpc.aio.insecure_channel(self.servers[0].grpc_addr)
        targets = ",".join(s.grpc_addr for s in self.servers)
        return grpc.aio.insecure_channel(f"ipv4:{targets}", options=[("grpc.lb_policy_name", "round_robin")])

    def md(self, user: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[user]}"),)

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        self.started = time.monotonic()
        async with self.channel() as channel:
            stub = rpc.TaskServiceStub(channel)
            self.projects = await self._create_projects(stub)
            if len(self.servers) > 1:
                # The other replica learns of the new projects from the event log; the watchers
                # should start on memberships every replica knows.
                await asyncio.sleep(1.0)
            start = await self._head(stub)
            self.watchers = self._plan_watchers(start)
            jobs = [asyncio.create_task(self._watch(log)) for log in self.watchers]
            jobs.append(asyncio.create_task(self._sample()))
            jobs.append(asyncio.create_task(self._faults()))
            await self._load(stub)
            await asyncio.sleep(2)  # let the watchers receive the last events
            self.stop.set()
            for job in jobs:
                job.cancel()
            for job in jobs:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job

    async def _create_projects(self, stub: rpc.TaskServiceStub) -> list[_Project]:
        """One project per three users (at least one). Each is owned by a user, with the next users
        in turn as editors and one viewer, so every user is in a project and most in two."""
        projects = []
        count = len(self.users)
        for index in range(max(1, (count + 2) // 3)):
            ring = [self.users[(index * 3 + k) % count] for k in range(count)]
            writers, viewers = tuple(ring[: 1 + _EDITORS]), tuple(ring[1 + _EDITORS : 2 + _EDITORS])
            members = [pb.ProjectMember(user=user, role=pb.PROJECT_ROLE_EDITOR) for user in writers[1:]]
            members += [pb.ProjectMember(user=user, role=pb.PROJECT_ROLE_VIEWER) for user in viewers]
            request = pb.CreateProjectRequest(
                title=f"soak project {index}", members=members, request_id=uuid.uuid4().hex
            )
            project = await stub.CreateProject(request, metadata=self.md(writers[0]), timeout=10)
            projects.append(_Project(project.id, writers, viewers))
            self.pools[project.id] = []
        return projects

    def _plan_watchers(self, start: int) -> list[WatcherLog]:
        """Label watchers over the users in turn; a share follows the projects in turn, each as
        the next of its members (viewers too)."""
        following = int(self.config.watchers * _PROJECT_WATCHERS) if self.projects else 0
        labels = self.config.watchers - following
        logs = [WatcherLog(self.users[n % len(self.users)], start) for n in range(labels)]
        for n in range(following):
            project = self.projects[n % len(self.projects)]
            member = project.members[(n // len(self.projects)) % len(project.members)]
            logs.append(WatcherLog(member, start, project.id))
        return logs

    async def _head(self, stub: rpc.TaskServiceStub) -> int:
        user = self.users[0]
        marker = await stub.CreateTask(pb.CreateTaskRequest(title="soak start"), metadata=self.md(user))
        call = stub.WatchTasks(
            pb.WatchTasksRequest(task_ids=[marker.id], include_initial=True), metadata=self.md(user)
        )
        async for event in call:
            call.cancel()
            return int(event.sequence)
        raise RuntimeError("no initial event")

    def now(self) -> float:
        return time.monotonic() - self.started

    async def _load(self, stub: rpc.TaskServiceStub) -> None:
        interval = 1.0 / self.config.rate
        names = [name for name, _ in _MIX]
        weights = [weight for _, weight in _MIX]
        in_flight: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while self.now() < self.config.duration_s:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if len(in_flight) >= _MAX_IN_FLIGHT:
                continue  # the server is not keeping up: skip rather than pile up
            op = self.random.choices(names, weights)[0]
            user, space = self._caller(op)
            job = asyncio.create_task(self._call(stub, op, user, space))
            in_flight.add(job)
            job.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight, return_exceptions=True)

    def _caller(self, op: str) -> tuple[str, str]:
        """Who makes a call and where: (user, "") in the user's own space, or (member, project id),
        a writer for a write and any member for a read."""
        if self.projects and self.random.random() < _PROJECT_SHARE:
            project = self.random.choice(self.projects)
            people = project.members if op in ("get", "list") else project.writers
            return self.random.choice(people), project.id
        return self.random.choice(self.users), ""

    async def _call(self, stub: rpc.TaskServiceStub, op: str, user: str, space: str) -> None:
        began = time.monotonic()
        status = "OK"
        task_id = ""
        if op in ("update", "delete", "get"):
            task_id = self._pick(space or user)
            if not task_id:
                op = "list" if op == "get" else "create"
        if space:
            self.project_calls += 1
        try:
            await getattr(self, "_" + op)(stub, user, space, task_id)
        except grpc.aio.AioRpcError as error:
            status = error.code().name
            if (
                task_id
                and op in ("update", "delete")
                and error.code()
                not in (
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.ABORTED,
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
            ):
                self.ledger[task_id].uncertain = True  # it may or may not have been applied
        finally:
            if task_id:
                self.busy.discard(task_id)
            self.calls.append((self.now(), op, (time.monotonic() - began) * 1000, status))

    def _pick(self, pool_name: str) -> str:
        pool = self.pools[pool_name]
        for _ in range(5):
            if not pool:
                return ""
            task_id = self.random.choice(pool)
            if task_id not in self.busy:
                self.busy.add(task_id)
                return task_id
        return ""

    def _remember(self, user: str, space: str, task: pb.Task) -> None:
        self.ledger[task.id] = Expect(task.version, task.title, user, space)
        self.pools[space or user].append(task.id)

    def _acknowledged(self, user: str, expect: Expect) -> None:
        if user != expect.creator:
            self.teammate_writes += 1

    def _request(self, user: str, space: str, n: int = 0) -> pb.CreateTaskRequest:
        # The creator's name is the label in a project too: the creator stays a member, so their
        # label watchers see every change to it, whoever makes it.
        return pb.CreateTaskRequest(
            title=f"{user} {uuid.uuid4().hex[:8]} {n}",
            labels=[user],
            project_id=space,
            request_id=uuid.uuid4().hex,
        )

    async def _create(self, stub: rpc.TaskServiceStub, user: str, space: str, _: str) -> None:
        task = await stub.CreateTask(self._request(user, space), metadata=self.md(user), timeout=10)
        self._remember(user, space, task)

    async def _update(self, stub: rpc.TaskServiceStub, user: str, _: str, task_id: str) -> None:
        expect = self.ledger[task_id]
        title = f"{user} updated {uuid.uuid4().hex[:8]}"
        request = pb.UpdateTaskRequest(id=task_id, title=title, expected_version=expect.version)
        task = await stub.UpdateTask(request, metadata=self.md(user), timeout=10)
        expect.version, expect.title = task.version, task.title
        self._acknowledged(user, expect)

    async def _delete(self, stub: rpc.TaskServiceStub, user: str, space: str, task_id: str) -> None:
        await stub.DeleteTask(pb.DeleteTaskRequest(id=task_id), metadata=self.md(user), timeout=10)
        expect = self.ledger[task_id]
        expect.deleted = True
        self.pools[space or user].remove(task_id)
        self._acknowledged(user, expect)

    async def _get(self, stub: rpc.TaskServiceStub, user: str, _: str, task_id: str) -> None:
        await stub.GetTask(pb.GetTaskRequest(id=task_id), metadata=self.md(user), timeout=10)

    async def _list(self, stub: rpc.TaskServiceStub, user: str, space: str, _: str) -> None:
        request = (
            pb.ListTasksRequest(project_id=space, page_size=50)
            if space
            else pb.ListTasksRequest(labels=[user], page_size=50)
        )
        await stub.ListTasks(request, metadata=self.md(user), timeout=10)

    async def _bulk(self, stub: rpc.TaskServiceStub, user: str, space: str, _: str) -> None:
        items = [self._request(user, space, n) for n in range(10)]
        answer = await stub.BulkCreateTasks(iter(items), metadata=self.md(user), timeout=10)
        for task in answer.tasks:
            self._remember(user, space, task)

    async def _process(self, stub: rpc.TaskServiceStub, user: str, space: str, _: str) -> None:
        commands = [pb.TaskCommand(command_id=str(n), create=self._request(user, space, n)) for n in range(3)]
        call = stub.ProcessTaskStream(iter(commands), metadata=self.md(user), timeout=10)
        async for result in call:
            if result.success:
                self._remember(user, space, result.task)

    async def _watch(self, log: WatcherLog) -> None:
        """Follow the user's label, or the project as a member of it; drop after a random while and
        resume after the last event."""
        stub_channel = self.channel()
        stub = rpc.TaskServiceStub(stub_channel)
        cursor = log.start
        try:
            while not self.stop.is_set():
                if log.project_id:
                    request = pb.WatchTasksRequest(project_ids=[log.project_id], after_sequence=cursor)
                else:
                    request = pb.WatchTasksRequest(labels=[log.user], after_sequence=cursor)
                call = stub.WatchTasks(request, metadata=self.md(log.user))
                try:
                    async with asyncio.timeout(self.random.uniform(2.0, 20.0)):
                        async for event in call:
                            if event.sequence <= cursor:
                                log.disorder += 1
                            cursor = event.sequence
                            log.digest.update(
                                event_key(event.sequence, event.event_type, event.task.id, event.task.version)
                            )
                            log.count += 1
                            log.last = cursor
                except TimeoutError:
                    pass
                except grpc.aio.AioRpcError as error:
                    self.calls.append((self.now(), "watch", 0.0, error.code().name))
                    await asyncio.sleep(0.2)
                finally:
                    call.cancel()
                log.resumes += 1
        finally:
            await stub_channel.close()

    async def _sample(self) -> None:
        pid = self.servers[0].proc.pid if self.servers[0].proc else 0
        while True:
            self.samples.append((self.now(), _rss(pid), _fds(pid)))
            await asyncio.sleep(_SAMPLE_EVERY_S)

    async def _faults(self) -> None:
        """On PostgreSQL: SIGKILL the second replica at 40% and restart it; restart a private
        database at 70%. The first replica (the one sampled) stays up."""
        if len(self.servers) < 2:
            return
        await asyncio.sleep(self.config.duration_s * 0.4)
        victim = self.servers[1]
        victim.kill()
        self.faults.append((self.now(), "replica kill -9"))
        await asyncio.sleep(2)
        await asyncio.to_thread(victim.start)
        self.faults.append((self.now(), "replica restarted"))
        if self.cluster is not None:
            await asyncio.sleep(max(0.0, self.config.duration_s * 0.7 - self.now()))
            self.faults.append((self.now(), "database restarting"))
            try:
                await asyncio.to_thread(self.cluster.restart)
            except subprocess.CalledProcessError as error:
                self.faults.append((self.now(), f"database restart failed: {error.stderr!r}"))
            else:
                self.faults.append((self.now(), "database restarted"))

    # -- checks --------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        tasks, events = checks.read_store(self.sqlite_path, self.database_url)
        lost, uncertain = checks.lost_writes(self.ledger, tasks)
        wrong = checks.history_mismatches(self.watchers, events)
        followers = [log for log in self.watchers if log.project_id]
        statuses: dict[str, int] = {}
        for _, _, _, status in self.calls:
            statuses[status] = statuses.get(status, 0) + 1
        growth = checks.growth(self.samples, self.config.duration_s)
        judged = self.config.duration_s >= checks.JUDGE_GROWTH_AFTER_S
        verdicts = {
            "acknowledged writes present as acknowledged": lost == 0,
            "every label watcher's history equals the event log": not any(
                not log.project_id for log in wrong
            ),
            "every project watcher's history equals the project's events in the log": not any(
                log.project_id for log in wrong
            ),
            "no INTERNAL or UNKNOWN": not any(statuses.get(code.name) for code in FAILURES),
        }
        if judged:
            verdicts["RSS flat in the second half (<= 10%)"] = growth["rss"] <= checks.MAX_GROWTH
            verdicts["open fds flat in the second half (<= 10%)"] = growth["fds"] <= checks.MAX_GROWTH
        return {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.config).items()},
            "calls": len(self.calls),
            "statuses": statuses,
            "acknowledged_tasks": len(self.ledger),
            "lost_writes": lost,
            "uncertain_writes": uncertain,
            "watchers": len(self.watchers),
            "watcher_events": sum(log.count for log in self.watchers),
            "watcher_resumes": sum(log.resumes for log in self.watchers),
            "watchers_mismatched": len(wrong),
            "projects": {
                "projects": len(self.projects),
                "members": sum(len(project.members) for project in self.projects),
                "tasks": sum(1 for expect in self.ledger.values() if expect.project_id),
                "calls": self.project_calls,
                "teammate_writes": self.teammate_writes,
                "watchers": len(followers),
                "watcher_events": sum(log.count for log in followers),
                "watchers_mismatched": sum(1 for log in wrong if log.project_id),
            },
            "growth_second_half": growth,
            "growth_judged": judged,
            "p99_ms_per_minute": checks.p99_per_minute(self.calls),
            "samples": self.samples,
            "faults": self.faults,
            "checks": verdicts,
            "passed": all(verdicts.values()),
        }


def _rss(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _fds(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return 0


def soak(config: SoakConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the soak; write soak.json and soak.png into `config.out_dir`; return the result."""
    run = Soak(config, say)
    try:
        say(
            f"soak: {config.store}, {config.duration_s:g} s, {config.rate:g} ops/s, "
            f"{config.users} users, {config.watchers} watchers (workdir {run.workdir})"
        )
        run.setup()
        asyncio.run(run.run())
        result = run.report()
    finally:
        run.teardown()
    config.out_dir.mkdir(parents=True, exist_ok=True)
    (config.out_dir / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    checks.chart(result, config.out_dir / "soak.png")
    say(checks.table(result))
    say(f"wrote {config.out_dir / 'soak.json'} and {config.out_dir / 'soak.png'}")
    return result
