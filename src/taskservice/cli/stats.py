"""`taskservice stats`: a compact view of a running server, read from its /metrics.

Two scrapes `interval` seconds apart give per-method rates and the latency of the calls in between;
with `interval` 0 one scrape gives averages since the server started. Error ratio counts every
status other than OK.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table


@dataclass
class MethodStats:
    calls: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound → cumulative count


@dataclass
class Snapshot:
    """What one scrape says, reduced to what the table shows."""

    taken: float
    methods: dict[str, MethodStats]
    gauges: dict[str, float]
    tasks: dict[str, float]
    deliveries: dict[str, float] = field(default_factory=dict)  # webhook attempts by outcome
    export_lag: dict[str, float] = field(default_factory=dict)  # events behind, by export target


def parse(text: str, taken: float) -> Snapshot:
    methods: dict[str, MethodStats] = defaultdict(MethodStats)
    gauges: dict[str, float] = {}
    tasks: dict[str, float] = {}
    deliveries: dict[str, float] = {}
    export_lag: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "grpc_server_handled_total":
                stats = methods[f"{labels['grpc_service']}/{labels['grpc_method']}"]
                stats.calls += sample.value
                if labels["grpc_code"] != "OK":
                    stats.errors += sample.value
            elif sample.name == "grpc_server_handling_seconds_bucket":
                stats = methods[f"{labels['grpc_service']}/{labels['grpc_method']}"]
                stats.buckets[float(labels["le"])] = sample.value
            elif sample.name == "taskservice_tasks":
                tasks[labels["status"]] = sample.value
            elif sample.name == "taskservice_webhook_deliveries_total":
                deliveries[labels["outcome"]] = sample.value
            elif sample.name == "taskservice_export_lag_events":
                export_lag[labels["target"]] = sample.value
            elif not labels:
                gauges[sample.name] = sample.value
    return Snapshot(taken, dict(methods), gauges, tasks, deliveries, export_lag)


def scrape(server: str, timeout: float = 5.0) -> Snapshot:
    url = server.rstrip("/") + "/metrics"
    if "://" not in url:
        url = "http://" + url
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        text = answer.read().decode()
    return parse(text, time.time())


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Estimate a quantile from cumulative histogram buckets, as PromQL's histogram_quantile does."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the largest finite bucket: its bound is the best estimate
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def _delta(after: MethodStats, before: MethodStats | None) -> MethodStats:
    if before is None:
        return after
    return MethodStats(
        calls=after.calls - before.calls,
        errors=after.errors - before.errors,
        buckets={le: n - before.buckets.get(le, 0.0) for le, n in after.buckets.items()},
    )


def table(before: Snapshot | None, after: Snapshot) -> Table:
    """Rows per method that has been called: rate, error ratio, p50/p99 latency."""
    if before is not None:
        window = max(after.taken - before.taken, 1e-9)
        title = f"over the last {window:.1f}s"
    else:
        window = max(after.taken - after.gauges.get("process_start_time_seconds", after.taken), 1e-9)
        title = "since the server started"
    grid = Table(title=f"TaskService calls {title}", title_justify="left")
    for heading in ("method", "calls", "rate/s", "errors", "p50 ms", "p99 ms"):
        grid.add_column(heading, justify="left" if heading == "method" else "right")
    for name in sorted(after.methods):
        stats = _delta(after.methods[name], before.methods.get(name) if before else None)
        if after.methods[name].calls == 0:
            continue
        p50, p99 = quantile(0.5, stats.buckets), quantile(0.99, stats.buckets)
        grid.add_row(
            name,
            f"{after.methods[name].calls:.0f}",
            f"{stats.calls / window:.1f}",
            f"{stats.errors / stats.calls:.1%}" if stats.calls else "-",
            f"{p50 * 1000:.2f}" if p50 is not None else "-",
            f"{p99 * 1000:.2f}" if p99 is not None else "-",
        )
    return grid


def summary(snapshot: Snapshot) -> str:
    g = snapshot.gauges
    tasks = ", ".join(f"{status} {count:.0f}" for status, count in snapshot.tasks.items())
    return (
        f"ready: {'yes' if g.get('taskservice_ready') == 1 else 'no'}   "
        f"watchers: {g.get('taskservice_watchers', 0):.0f}   "
        f"max watcher lag: {g.get('taskservice_watcher_lag_events', 0):.0f} events   "
        f"head sequence: {g.get('taskservice_event_head_sequence', 0):.0f}\n"
        f"tasks: {tasks or '-'}" + _events_out(snapshot)
    )


def _events_out(snapshot: Snapshot) -> str:
    """Webhook and export lines, when the server has either."""
    g = snapshot.gauges
    lines = ""
    if g.get("taskservice_webhooks_delivering") or any(snapshot.deliveries.values()):
        outcomes = ", ".join(f"{name} {n:.0f}" for name, n in snapshot.deliveries.items() if n)
        lines += (
            f"\nwebhooks delivering: {g.get('taskservice_webhooks_delivering', 0):.0f}   "
            f"max webhook lag: {g.get('taskservice_webhook_lag_events', 0):.0f} events   "
            f"attempts: {outcomes or '-'}"
        )
    for target, lag in sorted(snapshot.export_lag.items()):
        lines += f"\nexport {target}: lag {lag:.0f} events"
    return lines


def show(server: str, interval: float, console: Console | None = None) -> None:
    console = console or Console()
    before = None
    if interval > 0:
        before = scrape(server)
        time.sleep(interval)
    after = scrape(server)
    console.print(table(before, after))
    console.print(summary(after))
