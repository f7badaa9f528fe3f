"""A `shared` limit: two gateway processes, one budget, kept in kvcache (or redis-server)."""

from __future__ import annotations

import shutil

import pytest

from minisys.testing import ServerProcess, redis_server


def config(stub: int, store: str, on_error: str = "open") -> str:
    return f"""
[ratelimit]
store = "{store}"
on_store_error = "{on_error}"
store_timeout = 0.5

[upstreams.main]
members = ["127.0.0.1:{stub}"]

[[routes]]
name = "api"
path = "/"
upstream = "main"
auth = true

[consumers.dave]
keys = ["dave-key-0001"]
limit = {{ quota = 4, window = 60, policy = "shared" }}
"""


def gateway(path):
    return ServerProcess(
        "gateway", "--admin-port", "0", "--config", str(path), ready=["gateway", "gateway-admin"]
    )


@pytest.fixture(params=["kvcache", pytest.param("redis-server", marks=pytest.mark.interop)])
def store_url(request, tmp_path):
    """Our kvcache, and the real Redis when installed: the same pipeline works on both."""
    if request.param == "kvcache":
        with ServerProcess("kvcache", ready=["kvcache"]) as kv:
            yield f"redis://127.0.0.1:{kv.port}/0"
        return
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    with redis_server("--dir", str(tmp_path)) as redis:
        yield f"redis://127.0.0.1:{redis.port}/0"


def test_two_gateways_enforce_one_limit(stubs, h, tmp_path, store_url):
    path = tmp_path / "gw.toml"
    path.write_text(config(stubs[0], store_url))
    with gateway(path) as g1, gateway(path) as g2:
        ports = [g1.ports["gateway"], g2.ports["gateway"]]
        key = {"X-API-Key": "dave-key-0001"}
        replies = [h.request(ports[i % 2], "GET", "/x", key) for i in range(8)]
        assert [r.status for r in replies] == [200] * 4 + [429] * 4
        assert replies[0].headers["RateLimit-Policy"] == '"consumer";q=4;w=60'
        assert replies[3].headers["X-RateLimit-Remaining"] == "0"
        assert int(replies[4].headers["Retry-After"]) >= 1


@pytest.mark.parametrize(("on_error", "expected"), [("open", 200), ("closed", 429)])
def test_store_down_fails_open_or_closed(stubs, h, tmp_path, on_error, expected):
    path = tmp_path / "gw.toml"
    path.write_text(config(stubs[0], f"redis://127.0.0.1:{h.free_port()}/0", on_error))
    with gateway(path) as g:
        r = h.request(g.ports["gateway"], "GET", "/x", {"X-API-Key": "dave-key-0001"})
        assert r.status == expected
        metrics = h.request(g.ports["gateway-admin"], "GET", "/metrics").body.decode()
        assert "gateway_ratelimit_store_errors_total 1" in metrics


def test_behind_our_lb_with_proxy_protocol(stubs, h, tmp_path):
    """client → lb (--send-proxy, round robin) → two gateways → stub: one shared budget."""
    with ServerProcess("kvcache", ready=["kvcache"]) as kv:
        path = tmp_path / "gw.toml"
        text = config(stubs[0], f"redis://127.0.0.1:{kv.port}/0")
        path.write_text('[gateway]\ntrusted_proxies = ["127.0.0.1"]\n' + text)
        with gateway(path) as g1, gateway(path) as g2:
            backends = []
            for g in (g1, g2):
                backends += ["--backend", f"127.0.0.1:{g.ports['gateway']}"]
            with ServerProcess(
                "lb", *backends, "--send-proxy", "--algorithm", "roundrobin",
                "--admin-port", "0", ready=["lb", "lb-admin"],
            ) as lb:  # fmt: skip
                key = {"X-API-Key": "dave-key-0001", "X-Forwarded-For": "6.6.6.6"}
                replies = [h.request(lb.ports["lb"], "GET", "/x", key) for _ in range(6)]
                assert [r.status for r in replies] == [200] * 4 + [429] * 2
                # The address came from the PROXY line; the client's own XFF was dropped.
                assert replies[0].upstream_headers()["x-forwarded-for"] == "127.0.0.1"
