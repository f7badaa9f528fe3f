"""Counters, gauges and histograms, rendered in the Prometheus text exposition format.

Every server exposes what it is doing as numbers a person (or Prometheus) can scrape:
the gateway's requests per route, the lb's bytes per backend, the cache's hits. This module
owns the three metric kinds and their rendering; each layer decides what to measure.

    # HELP http_requests_total Requests answered.
    # TYPE http_requests_total counter
    http_requests_total{route="/users",status="200"} 42

Metrics with labels keep one child per distinct label set. A label set is a tuple of
strings in the order the labels were declared. A hot path asks once for the child of its
label set (`requests.labels(route="/users", status="200")`) and keeps that handle, so each
request costs one addition rather than building and checking a label tuple.

Read next: `minisys/http/web.py` serves `GET /metrics` from a Registry.

Simpler than the real thing: prometheus_client adds summaries, exemplars, multiprocess
mode and OpenMetrics; we render the classic text format (version 0.0.4) only.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets in seconds: from 0.1 ms (a cache hit on loopback) to 10 s (a timeout).
DEFAULT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# A label whose values come from clients (a path, an IP) could create children without
# end. Past this many label sets a metric folds new ones into one overflow child.
MAX_CHILDREN = 1000
OVERFLOW = "__overflow__"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _labels_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        if not name.replace("_", "a").replace(":", "a").isalnum() or name[0].isdigit():
            raise ValueError(f"invalid metric name {name!r}")
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._children: dict[tuple[str, ...], object] = {}

    def _key(self, labels: dict[str, str] | None) -> tuple[str, ...]:
        if not self.label_names:
            return ()
        labels = labels or {}
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        key = tuple(str(labels[n]) for n in self.label_names)
        if key not in self._children and len(self._children) >= MAX_CHILDREN:
            key = (OVERFLOW,) * len(self.label_names)
        return key

    def _new_child(self) -> object:
        raise NotImplementedError

    def _child(self, labels: dict[str, str] | None) -> object:
        key = self._key(labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class _Number:
    """One label set's value of a counter or gauge: the handle `labels()` returns.

    A hot path that counts every request keeps this handle instead of naming its labels
    each time: `inc()` is then one attribute addition, where `Counter.inc(route=…)`
    builds and checks a label tuple (about 6 µs per request in the gateway).
    """

    __slots__ = ("gauge", "value")

    def __init__(self, gauge: bool) -> None:
        self.value: float = 0
        self.gauge = gauge

    def inc(self, amount: float = 1) -> None:
        if amount < 0 and not self.gauge:
            raise ValueError("a counter only goes up")
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        if not self.gauge:
            raise ValueError("a counter only goes up")
        self.value -= amount

    def set(self, value: float) -> None:
        if not self.gauge:
            raise ValueError("a counter is only increased")
        self.value = value


def _render_numbers(metric: _Metric) -> list[str]:
    lines = metric.header()
    if not metric._children and not metric.label_names:
        lines.append(f"{metric.name} 0")
    for key, child in sorted(metric._children.items()):
        text = _labels_text(metric.label_names, key)
        lines.append(f"{metric.name}{text} {_format_value(child.value)}")  # type: ignore[attr-defined]
    return lines


class Counter(_Metric):
    """A number that only goes up (requests served, bytes sent)."""

    kind = "counter"

    def _new_child(self) -> _Number:
        return _Number(gauge=False)

    def labels(self, **labels: str) -> _Number:
        """The handle of one label set, to keep and `inc()` on a hot path."""
        return self._child(labels)  # type: ignore[return-value]

    def inc(self, amount: float = 1, **labels: str) -> None:
        self._child(labels).inc(amount)  # type: ignore[attr-defined]

    def value(self, **labels: str) -> float:
        child = self._children.get(self._key(labels))
        return 0 if child is None else child.value  # type: ignore[attr-defined]

    def render(self) -> list[str]:
        return _render_numbers(self)


class Gauge(_Metric):
    """A number that goes up and down (open connections, queue depth).

    A gauge can also read its value from a function at render time (`set_function`), for
    numbers the layer already keeps, such as the length of a queue.
    """

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._function: Callable[[], float] | None = None

    def _new_child(self) -> _Number:
        return _Number(gauge=True)

    def labels(self, **labels: str) -> _Number:
        """The handle of one label set, to keep and `set()`/`inc()` on a hot path."""
        return self._child(labels)  # type: ignore[return-value]

    def set(self, value: float, **labels: str) -> None:
        self._child(labels).set(value)  # type: ignore[attr-defined]

    def inc(self, amount: float = 1, **labels: str) -> None:
        self._child(labels).inc(amount)  # type: ignore[attr-defined]

    def dec(self, amount: float = 1, **labels: str) -> None:
        self._child(labels).dec(amount)  # type: ignore[attr-defined]

    def set_function(self, function: Callable[[], float]) -> None:
        self._function = function

    def value(self, **labels: str) -> float:
        if self._function is not None:
            return self._function()
        child = self._children.get(self._key(labels))
        return 0 if child is None else child.value  # type: ignore[attr-defined]

    def render(self) -> list[str]:
        if self._function is not None:
            return [*self.header(), f"{self.name} {_format_value(self._function())}"]
        return _render_numbers(self)


class _HistogramChild:
    """One label set's buckets: the handle `Histogram.labels()` returns."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class Histogram(_Metric):
    """How values are distributed (latencies): counts per bucket, plus sum and count.

    Buckets are cumulative when rendered (`le="0.005"` counts everything up to 5 ms),
    as Prometheus expects; we store them per bucket so `observe` touches one slot.
    """

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        if not self.buckets:
            raise ValueError("a histogram needs at least one bucket")

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.buckets)

    def labels(self, **labels: str) -> _HistogramChild:
        """The handle of one label set, to keep and `observe()` on a hot path."""
        return self._child(labels)  # type: ignore[return-value]

    def observe(self, value: float, **labels: str) -> None:
        self._child(labels).observe(value)  # type: ignore[attr-defined]

    def snapshot(self, **labels: str) -> tuple[int, float]:
        """(count, sum) for one label set."""
        child = self._children.get(self._key(labels))
        return (0, 0.0) if child is None else (child.count, child.sum)  # type: ignore[attr-defined]

    def render(self) -> list[str]:
        lines = self.header()
        for key, child in sorted(self._children.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), child.counts, strict=True):  # type: ignore[attr-defined]
                running += count
                le = 'le="' + _format_value(bound) + '"'
                lines.append(
                    f"{self.name}_bucket{_labels_text(self.label_names, key, le)} {running}"
                )
            labels = _labels_text(self.label_names, key)
            lines.append(f"{self.name}_sum{labels} {_format_value(child.sum)}")  # type: ignore[attr-defined]
            lines.append(f"{self.name}_count{labels} {child.count}")  # type: ignore[attr-defined]
        return lines


class Registry:
    """The metrics of one process, rendered together for `GET /metrics`."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels))  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels))  # type: ignore[return-value]

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets))  # type: ignore[return-value]

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


def parse_text(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse Prometheus text back into {(name, sorted labels): value}.

    Used by tests and by `python -m minisys status` to read another process's /metrics.
    """
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    # Lines end in "\n" only; str.splitlines would also split on \x1e and friends.
    for raw in text.split("\n"):
        line = raw.strip(" ")
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            labels, end = _parse_labels(line, brace + 1)
            value_text = line[end:]
        else:
            name, value_text = line.split(" ", 1)
            labels = ()
        samples[(name, labels)] = float(value_text.split()[0].replace("Inf", "inf"))
    return samples


def _parse_labels(text: str, i: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """Parse `a="x",b="y"}` starting at i; return the labels and the index after `}`."""
    labels = []
    while text[i] != "}":
        eq = text.index("=", i)
        name = text[i:eq]
        if text[eq + 1] != '"':
            raise ValueError(f"label value must be quoted in {text!r}")
        j = eq + 2
        value = []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
                value.append("\n" if text[j] == "n" else text[j])
            else:
                value.append(text[j])
            j += 1
        labels.append((name, "".join(value)))
        i = j + 1
        if text[i] == ",":
            i += 1
    return tuple(sorted(labels)), i + 1
