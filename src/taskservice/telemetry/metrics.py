"""Prometheus metrics: every family the server exports, and cheap ways for any transport to record.

Families follow the go-grpc-prometheus names (`grpc_server_*`, labels `grpc_type`, `grpc_service`,
`grpc_method`, `grpc_code`), so the standard gRPC dashboards and alerts work unchanged; the rest are
`taskservice_*`. Labels only ever carry method names, status codes, event types, task statuses, store
operations and fixed reasons — never task or user ids — so the number of series stays bounded.

A transport gets a `MethodMetrics` once per method (`for_method`) and calls its bound methods per
call. The series every call updates (`grpc_server_*`, store latency) are plain numbers updated
without a lock (`loopmetrics.py`), so recording costs well under a microsecond per RPC.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from taskservice.api import task_service_pb2 as pb
from taskservice.store.base import PROJECT_EVENT, StoredEvent
from taskservice.telemetry.loopmetrics import LoopCounter, LoopGauge, LoopHistogram, Value

if TYPE_CHECKING:
    from taskservice.domain.events import EventWindow
    from taskservice.store.base import TaskStore

__all__ = ["CONTENT_TYPE_LATEST", "exposition"]

disable_created_metrics()  # the *_created series double the exposition and no dashboard reads them

# Latency buckets from 0.25 ms: most calls on the embedded store finish in about a millisecond.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip

_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

rpcs_started = LoopCounter("grpc_server_started_total", "RPCs started on the server.", _RPC_LABELS)
rpcs_handled = LoopCounter(
    "grpc_server_handled_total", "RPCs completed on the server, by status code.", (*_RPC_LABELS, "grpc_code")
)
rpc_seconds = LoopHistogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its status (streams: the whole stream).",
    _RPC_LABELS,
    buckets=LATENCY_BUCKETS,
)
rpc_msgs_received = LoopCounter("grpc_server_msg_received_total", "Request messages received.", _RPC_LABELS)
rpc_msgs_sent = LoopCounter("grpc_server_msg_sent_total", "Response messages sent.", _RPC_LABELS)
rpc_active_streams = LoopGauge("grpc_server_active_streams", "Streaming RPCs in progress.", _RPC_LABELS)

events_appended = Counter(
    "taskservice_events_appended_total", "Committed changes appended to the event log.", ("event_type",)
)
store_seconds = LoopHistogram(
    "taskservice_store_operation_seconds",
    "Time spent in one store operation.",
    ("operation",),
    buckets=LATENCY_BUCKETS,
)
store_failures = Counter(
    "taskservice_store_operation_failures_total",
    "Store operations that failed for a reason other than a domain rule (e.g. unreachable store).",
    ("operation",),
)
ready = Gauge("taskservice_ready", "1 while the server is ready (store reachable, not draining), else 0.")
rate_limited = Counter(
    "taskservice_rate_limited_total",
    "Calls refused as RESOURCE_EXHAUSTED by a limit: `calls` (the per-user rate), `streams` (open "
    "streams per user) or `auth_failures` (failed authentications per client address).",
    ("limit",),
)
tasks = Gauge("taskservice_tasks", "Tasks in the store, by status.", ("status",))
AUTH_FAILURE_REASONS = (
    "missing",
    "malformed",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "bad_subject",
    "wrong_issuer",
    "wrong_audience",
    "bad_algorithm",
    "bad_signature",
    "unknown_key",
    "invalid",
)
auth_failures = Counter(
    "taskservice_auth_failures_total",
    "Calls refused as UNAUTHENTICATED, by reason (a fixed set, see docs/operations.md).",
    ("reason",),
)

for _reason in AUTH_FAILURE_REASONS:
    auth_failures.labels(_reason)
for _limit in ("calls", "streams", "auth_failures"):
    rate_limited.labels(_limit)


def auth_failed(reason: str) -> None:
    auth_failures.labels(reason if reason in AUTH_FAILURE_REASONS else "invalid").inc()


_EVENT_TYPES: dict[int, str] = {
    pb.EVENT_TYPE_CREATED: "created",
    pb.EVENT_TYPE_UPDATED: "updated",
    pb.EVENT_TYPE_DELETED: "deleted",
    PROJECT_EVENT: "project",
}
_STATUSES: dict[int, str] = {
    pb.TASK_STATUS_TODO: "todo",
    pb.TASK_STATUS_IN_PROGRESS: "in_progress",
    pb.TASK_STATUS_DONE: "done",
    pb.TASK_STATUS_CANCELLED: "cancelled",
}

# Status codes as go-grpc-prometheus spells them (Go's codes.Code.String()).
CODE_NAMES = {code: "".join(part.capitalize() for part in code.name.split("_")) for code in grpc.StatusCode}
CODE_NAMES[grpc.StatusCode.OK] = "OK"
CODE_NAMES[grpc.StatusCode.CANCELLED] = "Canceled"  # Go's spelling


class MethodMetrics:
    """The series of one RPC method, resolved once so per-call recording skips the label lookup."""

    def __init__(self, full_method: str, rpc_type: str) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        self._labels = (rpc_type, service, method)
        self.started = rpcs_started.labels(*self._labels).inc
        self.received = rpc_msgs_received.labels(*self._labels).inc
        self.sent = rpc_msgs_sent.labels(*self._labels).inc
        self._observe = rpc_seconds.labels(*self._labels).observe
        self._active = rpc_active_streams.labels(*self._labels) if rpc_type != "unary" else None
        self._handled: dict[grpc.StatusCode, Value] = {}

    def stream_opened(self) -> None:
        if self._active is not None:
            self._active.inc()

    def stream_closed(self) -> None:
        if self._active is not None:
            self._active.dec()

    def handled(self, code: grpc.StatusCode, seconds: float) -> None:
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = rpcs_handled.labels(*self._labels, CODE_NAMES[code])
        counter.inc()
        self._observe(seconds)


_methods: dict[str, MethodMetrics] = {}


def for_method(full_method: str, rpc_type: str) -> MethodMetrics:
    """The recorder for `/package.Service/Method`; `rpc_type` is unary, client_stream, server_stream
    or bidi_stream. The first call creates its series at zero so rates start from the first scrape."""
    metrics = _methods.get(full_method)
    if metrics is None:
        metrics = _methods[full_method] = MethodMetrics(full_method, rpc_type)
        metrics._handled[grpc.StatusCode.OK] = rpcs_handled.labels(*metrics._labels, "OK")
    return metrics


class TaskCounts:
    """Tasks by status, counted once at start and kept current from the committed events, so a scrape
    costs nothing (a count query per scrape would scan the task table on the event loop).

    The count reads a whole index: seconds for a million tasks whose database file is not in the
    page cache (9.5 s measured), so it runs after the server is serving (`load` in the background)
    and the gauge has no series until it is done. Events committed meanwhile are held and those the
    count did not see (sequence after its head) are added to it, so nothing is counted twice."""

    def __init__(self) -> None:
        self._children: dict[int, Any] = {}
        self._events = {kind: events_appended.labels(name) for kind, name in _EVENT_TYPES.items()}
        self._held: list[StoredEvent] | None = []  # None once loaded

    async def load(self, store: TaskStore) -> None:
        counts, head = await store.status_counts()
        held, self._held = self._held or [], None
        for status, delta in _moves(event for event in held if event.sequence > head).items():
            counts[status] = counts.get(status, 0) + delta
        for status, name in _STATUSES.items():
            child = tasks.labels(name)
            child.set(counts.get(status, 0))
            self._children[status] = child

    def on_events(self, events: list[StoredEvent]) -> None:
        """Store listener: count each appended event and move the task between status buckets. A
        commit can carry hundreds of events (bulk creates): the moves are summed first, and each
        series is changed once per commit."""
        appended: dict[int, int] = {}
        for event in events:
            appended[event.event_type] = appended.get(event.event_type, 0) + 1
        for kind, count in appended.items():
            self._events[kind].inc(count)
        if self._held is not None:
            self._held.extend(events)
            return
        for status, delta in _moves(events).items():
            if delta and status in self._children:
                self._children[status].inc(delta)


def _moves(events: Iterable[StoredEvent]) -> dict[int, int]:
    """How many tasks each status gained (or lost) by `events`."""
    moved: dict[int, int] = {}
    for event in events:
        kind = event.event_type
        if kind == pb.EVENT_TYPE_CREATED:
            moved[event.task.status] = moved.get(event.task.status, 0) + 1
        elif kind == pb.EVENT_TYPE_DELETED:
            moved[event.task.status] = moved.get(event.task.status, 0) - 1
        elif event.previous is not None and event.previous.status != event.task.status:
            moved[event.previous.status] = moved.get(event.previous.status, 0) - 1
            moved[event.task.status] = moved.get(event.task.status, 0) + 1
    return moved


class _WatchCollector(Collector):
    """Watchers, their lag and the event head, read from the event windows when Prometheus scrapes."""

    def __init__(self) -> None:
        self.windows: set[EventWindow] = set()  # one per server; a process normally runs one

    def collect(self) -> Iterator[GaugeMetricFamily]:
        windows = list(self.windows)
        yield GaugeMetricFamily(
            "taskservice_watchers", "Watch streams following the event log.", sum(w.watchers for w in windows)
        )
        yield GaugeMetricFamily(
            "taskservice_watcher_lag_events",
            "Largest lag of any watcher: head sequence minus the last sequence it was sent.",
            max((w.lag() for w in windows), default=0),
        )
        yield GaugeMetricFamily(
            "taskservice_event_window_bytes",
            "Estimated memory held by the window of recent events (bounded by --event-window-bytes).",
            sum(w.bytes for w in windows),
        )
        yield GaugeMetricFamily(
            "taskservice_event_head_sequence",
            "Newest event sequence.",
            max((w.head for w in windows), default=0),
        )


_watches = _WatchCollector()
REGISTRY.register(_watches)


def watch_window(window: EventWindow) -> None:
    """Report this window's watchers, lag and head (until `forget_window`)."""
    _watches.windows.add(window)


def forget_window(window: EventWindow) -> None:
    _watches.windows.discard(window)


WEBHOOK_OUTCOMES = ("success", "failure", "refused", "gone", "expired")
webhook_deliveries = Counter(
    "taskservice_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: success (2xx), failure (retried later), refused (the SSRF "
    "guard), gone (410: the webhook is disabled), expired (failing for the whole retry window: disabled).",
    ("outcome",),
)
for _outcome in WEBHOOK_OUTCOMES:
    webhook_deliveries.labels(_outcome)
export_events = Counter("taskservice_export_events_total", "Events exported to a broker.", ("target",))
export_delay = Histogram(
    "taskservice_export_delay_seconds",
    "Time from an event's commit to the broker's acknowledgement of it.",
    ("target",),
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


class _IntegrationCollector(Collector):
    """Webhook and export lag, read from the running dispatchers and exporters when scraped."""

    def __init__(self) -> None:
        self.dispatchers: set[Any] = set()  # WebhookDispatcher: .lag(), .delivering
        self.exporters: set[Any] = set()  # Export: .target, .lag()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        dispatchers = list(self.dispatchers)
        yield GaugeMetricFamily(
            "taskservice_webhook_lag_events",
            "Largest lag of any webhook this server delivers: head sequence minus its cursor.",
            max((d.lag() for d in dispatchers), default=0),
        )
        yield GaugeMetricFamily(
            "taskservice_webhooks_delivering",
            "Webhooks this server delivers now (with replicas, each webhook is delivered by one).",
            sum(d.delivering for d in dispatchers),
        )
        lag = GaugeMetricFamily(
            "taskservice_export_lag_events",
            "Events committed but not yet acknowledged by the broker, by export target.",
            labels=["target"],
        )
        for exporter in list(self.exporters):
            lag.add_metric([exporter.target], exporter.lag())
        yield lag


integrations = _IntegrationCollector()
REGISTRY.register(integrations)


def exposition() -> bytes:
    """The text exposition of every registered metric (what GET /metrics returns)."""
    return generate_latest(REGISTRY)
