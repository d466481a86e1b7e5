"""Prometheus families whose series are plain numbers, for the metrics every call updates.

prometheus_client's Counter, Gauge and Histogram take a lock and check their arguments on every
update, and every call makes several updates. The series below are
only ever updated from the server's event-loop thread (gRPC and gRPC-Web calls and the store
wrapper all run on it; `--workers` are separate processes), so an update is a plain `+=`, and the
families are built when Prometheus scrapes. Names, labels, types and values come out exactly as
prometheus_client writes them; children are created on the first `labels()` and kept, like its own.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Generic, TypeVar

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class Value:
    """One counter or gauge series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class Buckets:
    """One histogram series: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1  # the first bucket with value <= bound
        self.sum += value


C = TypeVar("C", Value, Buckets)


class _Family(Collector, Generic[C]):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        REGISTRY.register(self)

    def labels(self, *values: str) -> C:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._child()
        return child

    def _child(self) -> C:
        raise NotImplementedError


class _ValueFamily(_Family[Value]):
    _metric_family: type[CounterMetricFamily | GaugeMetricFamily]

    def _child(self) -> Value:
        return Value()

    def collect(self) -> Iterator[Metric]:
        family = self._metric_family(self._name, self._documentation, labels=self._labelnames)
        for values, child in self._children.items():
            family.add_metric(values, child.value)
        yield family


class LoopCounter(_ValueFamily):
    _metric_family = CounterMetricFamily

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames)


class LoopGauge(_ValueFamily):
    _metric_family = GaugeMetricFamily


class LoopHistogram(_Family[Buckets]):
    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self._bounds = (*buckets, math.inf)
        self._les = [floatToGoString(bound) for bound in self._bounds]

    def _child(self) -> Buckets:
        return Buckets(self._bounds)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, child in self._children.items():
            cumulative = list(zip(self._les, accumulate(child.counts), strict=True))
            family.add_metric(values, cumulative, child.sum)
        yield family
