"""The gateway's Prometheus metrics, and the handles that keep counting them cheap.

On the request's journey this is the last step inside the gateway, beside the access log:
when a response is ready, pipeline.py calls `count(route, status, seconds)`. The admin
port renders the registry at `GET /metrics`:

    gateway_requests_total{route="shop",status="200"} 1042
    gateway_request_duration_seconds_bucket{route="shop",le="0.005"} 1017
    gateway_ratelimited_total{route="shop",policy="consumer"} 3
    gateway_upstream_errors_total{upstream="shop",kind="connect"} 1
    gateway_breaker_state{upstream="shop"} 0          (0 closed, 1 half-open, 2 open)

Why handles: naming labels (`counter.inc(route=…, status=…)`) builds and checks a label
tuple on every call. The per-request pair (count and latency) is looked up once per
(route, status) with `labels()` and kept here, so counting a request is one dict lookup,
one addition and one bisect. The rarer metrics (429s, errors, retries) name their labels.

Simpler than the real thing: Kong's Prometheus plugin also counts bandwidth and upstream
latency per service and consumer; we keep the counters a learner needs to read a run.
"""

from __future__ import annotations

from typing import Any

from minisys.metrics import Registry

# (route, status) pairs whose metric children are kept at hand; upstream statuses are
# few in practice, and past this bound the children are looked up by label each time.
MAX_METRIC_HANDLES = 1024

# Upper bounds for latency histograms: 0.25 ms … 30 s covers loopback to a hung upstream.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0)  # fmt: skip


class GatewayMetrics:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.requests = registry.counter(
            "gateway_requests_total", "Requests answered, by route and status.", ("route", "status")
        )
        self.latency = registry.histogram(
            "gateway_request_duration_seconds",
            "Time from complete request to response, by route.",
            ("route",),
            LATENCY_BUCKETS,
        )
        self.limited = registry.counter(
            "gateway_ratelimited_total", "Requests refused with 429, by route and policy.",
            ("route", "policy"),
        )  # fmt: skip
        self.upstream_errors = registry.counter(
            "gateway_upstream_errors_total", "Failed upstream attempts, by upstream and kind.",
            ("upstream", "kind"),
        )  # fmt: skip
        self.retries = registry.counter(
            "gateway_upstream_retries_total", "Extra attempts on another member.", ("upstream",)
        )
        self.breaker = registry.gauge(
            "gateway_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            ("upstream",),
        )  # fmt: skip
        self.auth_failures = registry.counter(
            "gateway_auth_failures_total", "Requests refused with 401 or 403.", ("route", "status")
        )
        self.store_errors = registry.counter(
            "gateway_ratelimit_store_errors_total", "Shared rate-limit store failures."
        )
        # (route, status) -> (request counter child, latency histogram child); see count.
        self._handles: dict[tuple[str, int], tuple[Any, Any]] = {}

    def count(self, route: str, status: int, seconds: float) -> None:
        """One answered request: its status count and its latency."""
        handles = self._handles.get((route, status))
        if handles is None:
            handles = (
                self.requests.labels(route=route, status=str(status)),
                self.latency.labels(route=route),
            )
            if len(self._handles) < MAX_METRIC_HANDLES:
                self._handles[(route, status)] = handles
        handles[0].value += 1  # Counter child's inc(), without the call (per request)
        handles[1].observe(seconds)
