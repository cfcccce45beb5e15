"""A tiny in-house Prometheus registry: counters, gauges and histograms with labels.

Why not prometheus_client: the bot needs a dozen series, one text endpoint and no global state
(tests build a fresh ``Registry`` per server). Everything here is a few dicts behind a lock, and
``render()`` writes the text exposition format (version 0.0.4) that Prometheus scrapes.

    registry = Registry()
    commands = registry.counter("chatops_commands_total", "Commands run", ("platform", "outcome"))
    commands.inc(platform="slack", outcome="changed")
    latency = registry.histogram("chatops_ack_seconds", "Time to ack", ("platform",))
    latency.observe(0.012, platform="slack")
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

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
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL.match(label) or label == "le":
                raise ValueError(f"invalid label name {label!r} on {name}")
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, values: dict[str, str]) -> LabelValues:
        if set(values) != set(self.labels):
            raise ValueError(
                f"{self.name} takes labels {sorted(self.labels)}, got {sorted(values)}"
            )
        return tuple(str(values[label]) for label in self.labels)

    def _label_text(self, key: LabelValues, extra: tuple[tuple[str, str], ...] = ()) -> str:
        pairs = [*zip(self.labels, key, strict=True), *extra]
        if not pairs:
            return ""
        return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class _Valued(_Metric):
    """One number per label set: what a counter and a gauge both keep and expose."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def _add(self, amount: float, labels: dict[str, str]) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{self._label_text(k)} {_fmt(v)}" for k, v in items]


class Counter(_Valued):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._add(amount, labels)


class Gauge(_Valued):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help_text, labels)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be distinct numbers")
        self.buckets = (*bounds, math.inf) if bounds[-1] != math.inf else tuple(bounds)
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            self._sums[key] = self._sums.get(key, 0.0) + value

    @contextmanager
    def time(self, **labels: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - started, **labels)

    def count(self, **labels: str) -> int:
        with self._lock:
            return sum(self._counts.get(self._key(labels), []))

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        lines: list[str] = []
        for key, counts, total in items:
            cumulative = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                cumulative += n
                le = (("le", _fmt(bound)),)
                lines.append(f"{self.name}_bucket{self._label_text(key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{self._label_text(key)} {_fmt(total)}")
            lines.append(f"{self.name}_count{self._label_text(key)} {cumulative}")
        return lines


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """Holds the metrics of one process; asking twice for the same name returns the same metric
    (so two modules may share a series), asking with another type or labels is an error."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _get(self, name: str, cls: type[_Metric], labels: Sequence[str]) -> _Metric | None:
        existing = self._metrics.get(name)
        if existing is None:
            return None
        if type(existing) is not cls or existing.labels != tuple(labels):
            raise ValueError(f"metric {name} already registered as {existing.kind}")
        return existing

    def _get_or_make(
        self, name: str, cls: type[_M], labels: Sequence[str], make: Callable[[], _M]
    ) -> _M:
        """The metric registered as ``name``, else a new one from ``make()``, registered."""
        with self._lock:
            metric = self._get(name, cls, labels) or make()
            self._metrics[name] = metric
        assert isinstance(metric, cls)
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self._get_or_make(name, Counter, labels, lambda: Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get_or_make(name, Gauge, labels, lambda: Gauge(name, help_text, labels))

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._get_or_make(
            name, Histogram, labels, lambda: Histogram(name, help_text, labels, buckets)
        )

    def render(self) -> str:
        with self._lock:
            metrics = sorted(self._metrics.values(), key=lambda m: m.name)
        lines: list[str] = []
        for metric in metrics:
            lines += metric.header()
            lines += metric.samples()
        return "\n".join(lines) + "\n"
