"""The bot's Prometheus metrics: ``prometheus_client`` behind a small facade, one
``CollectorRegistry`` per ``Registry`` (so per server, and per test), never the global default.

The facade is what the rest of the bot calls; it keeps labels as keyword arguments and lets two
modules ask for the same series (the same name, type and labels give the same metric; another
type or other labels are an error):

    registry = Registry()
    commands = registry.counter("chatops_commands_total", "Commands run", ("platform", "outcome"))
    commands.inc(platform="slack", outcome="changed")
    latency = registry.histogram("chatops_ack_seconds", "Time to ack", ("platform",))
    latency.observe(0.012, platform="slack")

``render()`` is ``generate_latest``: the Prometheus text format, served as version 0.0.4 (what
every Prometheus version reads; our metric names are all legacy-valid, so it is the same text).
The ``*_created`` timestamp series prometheus_client adds to counters and histograms are left
out of the exposition: the bot never exported them and nothing graphs them. Leaving them out
here, rather than with ``disable_created_metrics()``, changes no process-wide setting.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import prometheus_client as prom
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

# Legacy (pre-UTF-8) names only, so the text is the 0.0.4 format every Prometheus reads.
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

_W = TypeVar("_W", bound=MetricWrapperBase)


def _valid(name: str, labels: Sequence[str]) -> None:
    if not _NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    for label in labels:
        if not _LABEL.match(label) or label == "le" or label.startswith("__"):
            raise ValueError(f"invalid label name {label!r} on {name}")


class _Metric:
    """One prometheus_client metric with its label names; labels are passed as keywords."""

    kind = "untyped"

    def __init__(self, name: str, labels: Sequence[str], metric: MetricWrapperBase) -> None:
        self.name = name
        self.labels = tuple(labels)
        self._metric = metric
        # label values -> series: prometheus_client's ``labels()`` validates and locks on every
        # call, a few µs that every HTTP request (the Slack ack included) would pay twice
        self._children: dict[tuple[tuple[str, object], ...], Any] = {}

    def _child(self, metric: _W, values: dict[str, str]) -> _W:
        """The series for these label values (the metric itself when it has no labels)."""
        key = tuple(values.items())
        child = self._children.get(key)
        if child is not None:
            return cast(_W, child)
        self._check(values)
        child = metric.labels(**{k: str(v) for k, v in values.items()}) if self.labels else metric
        if len(self._children) < 10_000:  # label values are bounded; this bounds the cache too
            self._children[key] = child
        return child

    def _check(self, values: dict[str, str]) -> None:
        if set(values) != set(self.labels):
            raise ValueError(
                f"{self.name} takes labels {sorted(self.labels)}, got {sorted(values)}"
            )

    def _sample(self, sample_name: str, values: dict[str, str]) -> float:
        """The current value of one sample, 0 if that label set was never touched."""
        self._check(values)
        wanted = {k: str(v) for k, v in values.items()}
        for family in self._metric.collect():
            for sample in family.samples:
                if sample.name == sample_name and sample.labels == wanted:
                    return float(sample.value)
        return 0.0


class Counter(_Metric):
    kind = "counter"

    def __init__(
        self, registry: CollectorRegistry, name: str, help_text: str, labels: Sequence[str]
    ) -> None:
        _valid(name, labels)
        self._counter = prom.Counter(name, help_text, labels, registry=registry)
        super().__init__(name, labels, self._counter)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._child(self._counter, labels).inc(amount)

    def value(self, **labels: str) -> float:
        total = self.name if self.name.endswith("_total") else self.name + "_total"
        return self._sample(total, labels)


class Gauge(_Metric):
    kind = "gauge"

    def __init__(
        self, registry: CollectorRegistry, name: str, help_text: str, labels: Sequence[str]
    ) -> None:
        _valid(name, labels)
        self._gauge = prom.Gauge(name, help_text, labels, registry=registry)
        super().__init__(name, labels, self._gauge)

    def set(self, value: float, **labels: str) -> None:
        self._child(self._gauge, labels).set(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(self._gauge, labels).inc(amount)

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self._child(self._gauge, labels).dec(amount)

    def value(self, **labels: str) -> float:
        return self._sample(self.name, labels)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help_text: str,
        labels: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        _valid(name, labels)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be distinct numbers")
        self._histogram = prom.Histogram(name, help_text, labels, registry=registry, buckets=bounds)
        super().__init__(name, labels, self._histogram)
        self.buckets = (*bounds, float("inf")) if bounds[-1] != float("inf") else tuple(bounds)

    def observe(self, value: float, **labels: str) -> None:
        self._child(self._histogram, labels).observe(value)

    @contextmanager
    def time(self, **labels: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - started, **labels)

    def count(self, **labels: str) -> int:
        return int(self._sample(self.name + "_count", labels))


class _WithoutCreated(Collector):
    """What ``/metrics`` shows: the registry's samples less the ``*_created`` series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():  # fresh objects on every collect
            created = family.name + "_created"
            family.samples = [s for s in family.samples if s.name != created]
            yield family


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """The metrics of one server: its own ``CollectorRegistry``; asking twice for the same name
    returns the same metric (so two modules may share a series), asking with another type or
    labels is an error."""

    def __init__(self) -> None:
        self.collector_registry = CollectorRegistry(auto_describe=True)
        self._exposed = _WithoutCreated(self.collector_registry)
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _get_or_make(
        self, name: str, cls: type[_M], labels: Sequence[str], make: Callable[[], _M]
    ) -> _M:
        """The metric registered as ``name``, else a new one from ``make()``, registered."""
        with self._lock:
            existing = self._metrics.get(name)
            if existing is None:
                metric = make()
                self._metrics[name] = metric
                return metric
        if type(existing) is not cls or existing.labels != tuple(labels):
            raise ValueError(f"metric {name} already registered as {existing.kind}")
        assert isinstance(existing, cls)
        return existing

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        reg = self.collector_registry
        return self._get_or_make(
            name, Counter, labels, lambda: Counter(reg, name, help_text, labels)
        )

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        reg = self.collector_registry
        return self._get_or_make(name, Gauge, labels, lambda: Gauge(reg, name, help_text, labels))

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        reg = self.collector_registry
        return self._get_or_make(
            name, Histogram, labels, lambda: Histogram(reg, name, help_text, labels, buckets)
        )

    def render(self) -> str:
        return prom.generate_latest(self._exposed).decode()


def rollbacks(reg: Registry) -> Counter:
    """Rollbacks by trigger and outcome: one definition for the chat command and the policy."""
    return reg.counter(
        "chatops_rollbacks_total",
        "Rollbacks by trigger (manual: /rollback; auto: the auto-rollback policy) and outcome",
        ("trigger", "outcome"),
    )
