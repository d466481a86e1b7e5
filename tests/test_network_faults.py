"""Faults on a real network between a replica and PostgreSQL, while the replica serves.

The replica runs in a network namespace of its own (tests/netns.py) and reaches a private
PostgreSQL in the root namespace over a veth pair; the test reaches the replica over the same pair.
Faults apply only to the PostgreSQL port, in the namespace:

- a partition: iptables DROP both ways, silent (no reset), as a cut cable or a firewall;
- packet loss: iptables `statistic --mode random` DROP, both ways;
- latency: `tc netem` when the kernel has it. This kernel has no netem (no sch_netem module, and
  none can be loaded), so the packets go to an NFQUEUE instead, where tests/delayer.py gives each
  its verdict after a fixed delay: a real per-packet delay in the kernel's path, not a proxy.

The tests skip, with the reason, only where network namespaces cannot be made (not root, no
`ip`); missing PostgreSQL binaries fail them under TASKSERVICE_REQUIRE_POSTGRES=1, as elsewhere.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.eventually import eventually
from tests.netns import Netns
from tests.postgres import query
from tests.private_postgres import PrivatePostgres
from tests.servers import ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

INTERVAL = 1.0  # --health-check-interval of the replica under test
STORE_TIMEOUT = 5.0  # the default --store-timeout
DEADLINE = 10.0  # every call's deadline
SLACK = 0.75  # scheduling on a busy two-core machine
FAULT_SECONDS = 8.0  # how long loss and latency last
LOSS = 0.1  # of packets, each way
LATENCY = 0.1  # seconds added to each packet, each way


@dataclass
class Network:
    netns: Netns
    database: PrivatePostgres
    replica: ServerProcess

    @property
    def pg_port(self) -> int:
        return self.database.port


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """PostgreSQL in the root namespace; a replica in its own namespace, connected over veth."""
    netns = Netns()
    database = PrivatePostgres()
    try:
        netns.create()
        database.init()
        database.trust(netns.subnet)
        database.start(listen=("127.0.0.1", netns.host_ip))
        store = f"postgresql://postgres@{netns.host_ip}:{database.port}/postgres"
        replica = ServerProcess(
            tmp_path / "replica",
            "--health-check-interval",
            str(INTERVAL),
            store=store,
            host=netns.ns_ip,
            wrapper=netns.prefix,
        )
        try:
            yield Network(netns, database, replica.start())
        finally:
            replica.kill()
    finally:
        netns.destroy()
        database.destroy()


def serving(replica: ServerProcess) -> bool:
    """The replica's gRPC health, which only the background readiness check moves here."""
    with grpc.insecure_channel(replica.grpc_addr) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def readyz(replica: ServerProcess) -> int:
    try:
        with urllib.request.urlopen(f"{replica.http_url}/readyz", timeout=DEADLINE) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def seconds_until(condition: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    eventually(condition, timeout=timeout, interval=0.02)
    return time.monotonic() - start


@dataclass
class Load:
    """Creates one after another on the replica, each with a deadline, until stopped."""

    stub: rpc.TaskServiceStub
    tag: str
    acknowledged: dict[str, str] = field(default_factory=dict)  # id -> title
    outcomes: list[tuple[grpc.StatusCode, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            title = f"load {n}"
            start = time.monotonic()
            try:
                task = self.stub.CreateTask(
                    pb.CreateTaskRequest(title=title, labels=[self.tag]), timeout=DEADLINE
                )
            except grpc.RpcError as error:
                self.outcomes.append((error.code(), time.monotonic() - start))
                time.sleep(0.05)
                continue
            self.outcomes.append((grpc.StatusCode.OK, time.monotonic() - start))
            self.acknowledged[task.id] = title

    def codes(self) -> set[grpc.StatusCode]:
        return {code for code, _ in self.outcomes}

    def ok(self) -> int:
        return sum(1 for code, _ in self.outcomes if code == grpc.StatusCode.OK)


class Watcher:
    """A watch from `after` that resumes with after_sequence whenever it ends UNAVAILABLE."""

    def __init__(self, replica: ServerProcess, tag: str, after: int) -> None:
        self.stub = replica.stub()
        self.tag = tag
        self.after = after
        self.events: list[pb.TaskEvent] = []
        self.resumed = 0
        self.last_title = ""
        self._stop = threading.Event()
        self._call: Any = None  # the open WatchTasks call
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            after = self.events[-1].sequence if self.events else self.after
            self._call = self.stub.WatchTasks(
                pb.WatchTasksRequest(labels=[self.tag], after_sequence=after), timeout=120
            )
            try:
                for event in self._call:
                    self.events.append(event)
                    self.last_title = event.task.title
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.CANCELLED and self._stop.is_set():
                    return
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                self.resumed += 1
                time.sleep(0.2)

    def start(self) -> Watcher:
        self.thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        self.thread.join(10)


@contextlib.contextmanager
def serving_under_load(network: Network, tag: str) -> Iterator[tuple[Load, Watcher, int]]:
    """Creates running one after another and a watch open from the first one's event on; at the
    end, one last create that the watch must see, then the check that nothing was lost."""
    replica = network.replica
    stub = replica.stub()
    stub.CreateTask(pb.CreateTaskRequest(title="before", labels=[tag]), timeout=DEADLINE)
    after = int(query(network.database.url, "SELECT max(sequence) FROM events")[0][0])
    watcher = Watcher(replica, tag, after).start()
    load = Load(stub, tag)
    writer = threading.Thread(target=load.run)
    writer.start()
    try:
        eventually(lambda: load.ok() >= 5, what="writes before the fault")
        yield load, watcher, after
        ok = load.ok()
        eventually(lambda: load.ok() >= ok + 5, timeout=30, what="writes after healing")
        load.stop.set()
        writer.join()
        last = stub.CreateTask(pb.CreateTaskRequest(title="after", labels=[tag]), timeout=DEADLINE)
        load.acknowledged[last.id] = "after"
        eventually(lambda: watcher.last_title == "after", timeout=30, what="the watch to see the last write")
    finally:
        load.stop.set()
        writer.join()
        watcher.close()
    failed = [(code.name, round(took, 2)) for code, took in load.outcomes if code != grpc.StatusCode.OK]
    print(f"load: {load.ok()} acknowledged; failed: {failed}; the watch resumed {watcher.resumed} times")
    assert load.codes() <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    check_nothing_lost(network, load, watcher, after)


def check_nothing_lost(network: Network, load: Load, watcher: Watcher, after: int) -> None:
    """Every acknowledged create is stored as acknowledged, and the watcher saw exactly the log."""
    admin_url = network.database.url
    rows = query(admin_url, "SELECT id, body FROM tasks")
    stored = {row["id"]: pb.Task.FromString(row["body"]).title for row in rows}
    missing = {i: t for i, t in load.acknowledged.items() if stored.get(i) != t}
    assert not missing, f"{len(missing)} acknowledged writes are not in the database: {missing}"
    logged = [row[0] for row in query(admin_url, "SELECT sequence FROM events WHERE sequence > $1", after)]
    watched = [e.sequence for e in watcher.events]
    assert watched == sorted(set(watched)), "the watcher saw an event twice or out of order"
    assert watched == sorted(logged), "the watcher's history differs from the event log"


def test_partition_flips_readiness_fails_calls_fast_and_heals(network: Network, tag: str) -> None:
    """A silent partition: gRPC health goes NOT_SERVING within the check interval (plus slack) and
    /readyz answers 503; GetTask, ListTasks and CreateTask with a 10 s deadline end UNAVAILABLE
    within the store timeout (plus slack), never hang; after healing the replica is ready again,
    writes succeed, the open watch (resumed if it ended) has every event of the log, and every
    acknowledged write is stored."""
    replica, netns = network.replica, network.netns
    stub = replica.stub()
    task = stub.CreateTask(pb.CreateTaskRequest(title="to read", labels=[tag]), timeout=DEADLINE)
    with serving_under_load(network, tag) as (load, _, _):
        assert serving(replica)
        netns.partition(network.pg_port)
        flipped = seconds_until(lambda: not serving(replica), timeout=INTERVAL + 10)
        print(f"\nreadiness flipped {flipped:.2f} s after the partition")
        assert flipped <= INTERVAL + SLACK
        assert readyz(replica) == 503

        calls: dict[str, Callable[[], object]] = {
            "GetTask": lambda: stub.GetTask(pb.GetTaskRequest(id=task.id), timeout=DEADLINE),
            "ListTasks": lambda: stub.ListTasks(pb.ListTasksRequest(labels=[tag]), timeout=DEADLINE),
            "CreateTask": lambda: stub.CreateTask(
                pb.CreateTaskRequest(title="during", labels=[tag]), timeout=DEADLINE
            ),
        }
        answers = dict(zip(calls, concurrently(list(calls.values())), strict=True))
        print(
            "during the partition: "
            + ", ".join(f"{n} {c.name} in {s:.2f} s" for n, (c, s) in answers.items())
        )
        for name, (code, took) in answers.items():
            assert code == grpc.StatusCode.UNAVAILABLE, f"{name}: {code}"
            assert took <= STORE_TIMEOUT + SLACK, f"{name} took {took:.2f} s"

        netns.heal()
        healed = seconds_until(lambda: serving(replica), timeout=INTERVAL + 20)
        print(f"ready again {healed:.2f} s after healing")
        assert healed <= INTERVAL + SLACK
    slowest = max(took for code, took in load.outcomes if code != grpc.StatusCode.OK)
    assert slowest <= STORE_TIMEOUT + SLACK


def concurrently(calls: list[Callable[[], object]]) -> list[tuple[grpc.StatusCode, float]]:
    """Make the calls at once; each one's status and how long it took."""
    answers: list[tuple[grpc.StatusCode, float]] = [(grpc.StatusCode.UNKNOWN, 0.0)] * len(calls)

    def call(n: int) -> None:
        start = time.monotonic()
        try:
            calls[n]()
            answers[n] = (grpc.StatusCode.OK, time.monotonic() - start)
        except grpc.RpcError as error:
            answers[n] = (error.code(), time.monotonic() - start)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_packet_loss_slows_the_replica_but_loses_nothing(network: Network, tag: str) -> None:
    """10% of packets to and from PostgreSQL dropped, each way: TCP retransmits (200 ms and more
    each time), so calls are slower and may end UNAVAILABLE at the store timeout; none is INTERNAL
    or hangs, the replica keeps acknowledging writes, and nothing acknowledged is lost."""
    replica, netns = network.replica, network.netns
    with serving_under_load(network, tag) as (load, _, _):
        netns.lose(network.pg_port, LOSS)
        ok = load.ok()
        readiness = sample(lambda: serving(replica), seconds=FAULT_SECONDS)
        during = load.ok() - ok
        netns.heal()
        print(
            f"\n{LOSS:.0%} loss for {FAULT_SECONDS} s: {during} writes acknowledged, "
            f"not ready in {readiness.count(False)} of {len(readiness)} samples"
        )
        assert during >= 1
        eventually(lambda: serving(replica), timeout=INTERVAL + SLACK, what="readiness after healing")
    assert all(took <= STORE_TIMEOUT + SLACK for _, took in load.outcomes)


def sample(probe: Callable[[], bool], seconds: float) -> list[bool]:
    """`probe()` every 100 ms for `seconds`."""
    values: list[bool] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        values.append(probe())
        time.sleep(0.1)
    return values


def test_latency_slows_the_replica_but_every_call_succeeds(network: Network, tag: str) -> None:
    """100 ms added each way to every packet to and from PostgreSQL (a 200 ms round trip): netem
    where the kernel has it; on this kernel, which has none, iptables NFQUEUE and tests/delayer.py.
    Every call still succeeds, slower by its round trips, the replica stays ready (a ping's round
    trips fit in half the check interval), and nothing is lost."""
    replica, netns = network.replica, network.netns
    with serving_under_load(network, tag) as (load, _, _):
        how = netns.delay(network.pg_port, LATENCY)
        ok, calls = load.ok(), len(load.outcomes) + 1  # the call in flight may have begun before
        readiness = sample(lambda: serving(replica), seconds=FAULT_SECONDS)
        slowed, during = [took for _, took in load.outcomes[calls:]], load.ok() - ok
        netns.heal()
        print(
            f"\n{LATENCY * 1000:.0f} ms each way ({how}) for {FAULT_SECONDS} s: {during} writes "
            f"acknowledged, {max(slowed):.2f} s the slowest; not ready in {readiness.count(False)} of "
            f"{len(readiness)} samples"
        )
        assert min(slowed) >= 2 * LATENCY
        assert all(readiness)
    assert load.codes() == {grpc.StatusCode.OK}
