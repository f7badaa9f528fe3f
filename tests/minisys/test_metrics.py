"""Metrics render to the Prometheus text format, and the text parses back to the numbers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minisys.metrics import MAX_CHILDREN, OVERFLOW, Registry, parse_text

label_values = st.text(min_size=0, max_size=12)


def test_counter_gauge_histogram_render_and_parse_back():
    reg = Registry()
    requests = reg.counter("http_requests_total", "Requests answered.", ["route", "status"])
    conns = reg.gauge("open_connections", "Connections open now.")
    latency = reg.histogram("latency_seconds", "Latency.", ["route"], buckets=[0.01, 0.1])
    requests.inc(route="/users", status="200")
    requests.inc(2, route="/users", status="200")
    requests.inc(route="/orders", status="429")
    conns.set(5)
    conns.dec()
    for v in (0.005, 0.05, 0.5):
        latency.observe(v, route="/users")
    text = reg.render()
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE latency_seconds histogram" in text
    samples = parse_text(text)
    assert samples[("http_requests_total", (("route", "/users"), ("status", "200")))] == 3
    assert samples[("http_requests_total", (("route", "/orders"), ("status", "429")))] == 1
    assert samples[("open_connections", ())] == 4
    buckets = {
        le: samples[("latency_seconds_bucket", (("le", le), ("route", "/users")))]
        for le in ("0.01", "0.1", "+Inf")
    }
    assert buckets == {"0.01": 1, "0.1": 2, "+Inf": 3}  # cumulative
    assert samples[("latency_seconds_count", (("route", "/users"),))] == 3
    assert math.isclose(samples[("latency_seconds_sum", (("route", "/users"),))], 0.555)


@given(st.dictionaries(st.tuples(label_values, label_values), st.integers(0, 10**9), max_size=20))
def test_any_label_values_round_trip(values):
    reg = Registry()
    c = reg.counter("c_total", "c", ["a", "b"])
    for (a, b), n in values.items():
        c.inc(n, a=a, b=b)
    samples = parse_text(reg.render())
    for (a, b), n in values.items():
        assert samples[("c_total", tuple(sorted((("a", a), ("b", b)))))] == n


def test_gauge_function_reads_live_value():
    reg = Registry()
    queue = [1, 2, 3]
    reg.gauge("queue_depth", "Jobs waiting.").set_function(lambda: len(queue))
    queue.append(4)
    assert parse_text(reg.render())[("queue_depth", ())] == 4


def test_label_cardinality_is_bounded():
    reg = Registry()
    c = reg.counter("by_ip_total", "per client", ["ip"])
    for i in range(MAX_CHILDREN + 50):
        c.inc(ip=f"10.0.{i // 256}.{i % 256}")
    assert len(c._children) == MAX_CHILDREN + 1
    assert c.value(ip=OVERFLOW) == 50


def test_wrong_labels_and_negative_counter_are_errors():
    reg = Registry()
    c = reg.counter("x_total", "x", ["a"])
    with pytest.raises(ValueError):
        c.inc(b="1")
    with pytest.raises(ValueError):
        c.inc(-1, a="1")
    with pytest.raises(ValueError):
        reg.counter("x_total", "again")


def test_label_handles_share_the_value_of_their_label_set():
    reg = Registry()
    requests = reg.counter("requests_total", "Requests.", ["route"])
    depth = reg.gauge("depth", "Queue depth.", ["tube"])
    latency = reg.histogram("latency_seconds", "Latency.", ["route"], buckets=[0.1])
    users = requests.labels(route="/users")
    users.inc()
    users.inc(4)
    requests.inc(route="/users")
    assert requests.value(route="/users") == 6
    assert requests.labels(route="/users") is users  # one child per label set
    emails = depth.labels(tube="emails")
    emails.set(7)
    emails.dec(2)
    depth.inc(tube="emails")
    assert depth.value(tube="emails") == 6
    handle = latency.labels(route="/users")
    handle.observe(0.05)
    latency.observe(0.5, route="/users")
    assert latency.snapshot(route="/users") == (2, 0.55)
    samples = parse_text(reg.render())
    assert samples[("requests_total", (("route", "/users"),))] == 6
    assert samples[("latency_seconds_bucket", (("le", "0.1"), ("route", "/users")))] == 1


def test_counter_handle_only_goes_up():
    handle = Registry().counter("c_total", "C.", ["k"]).labels(k="a")
    for change in (lambda: handle.inc(-1), lambda: handle.dec(), lambda: handle.set(3)):
        with pytest.raises(ValueError):
            change()
    assert handle.value == 0


def test_handles_past_the_cardinality_bound_share_the_overflow_child():
    c = Registry().counter("c_total", "C.", ["k"])
    for i in range(MAX_CHILDREN):
        c.inc(k=str(i))
    late = c.labels(k="late")
    assert late is c.labels(k="later")
    late.inc()
    assert c.value(k=OVERFLOW) == 1
