"""Issue 8's metrics (429s, upstream errors, retries) and a reload that keeps connections."""

from __future__ import annotations

import re
import signal
import socket

from minisys.testing import ServerProcess, wait_until


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_count_429s_upstream_errors_and_retries(gateway, h):
    key = {"X-API-Key": "dave-key-00001"}  # 1 per minute, used by no other test
    assert [h.request(gateway.port, "GET", "/limited/m", key).status for _ in range(2)] == [
        200,
        429,
    ]
    # /flaky's first member is dead: a connect error, retried on the live member.
    for i in range(2):
        assert h.request(gateway.port, "GET", f"/flaky/m{i}").status == 200
    text = h.request(gateway.admin, "GET", "/metrics").body.decode()
    assert metric(text, "gateway_ratelimited_total", route="limited", policy="consumer") >= 1
    assert metric(text, "gateway_requests_total", route="limited", status="429") >= 1
    assert metric(text, "gateway_upstream_errors_total", upstream="flaky", kind="connect") >= 1
    assert metric(text, "gateway_upstream_retries_total", upstream="flaky") >= 1
    assert metric(text, "gateway_breaker_state", upstream="main") == 0
    assert 'gateway_request_duration_seconds_count{route="limited"}' in text


def get(sock: socket.socket, path: str) -> bytes:
    """One keep-alive request on `sock`; the whole response (small, Content-Length)."""
    sock.sendall(b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_sighup_reload_keeps_open_client_connections(stubs, tmp_path):
    path = tmp_path / "gw.toml"
    base = f'[upstreams.main]\nmembers = ["127.0.0.1:{stubs[0]}"]\n'
    route = '\n[[routes]]\nname = "{0}"\npath = "/{0}"\nupstream = "main"\n'
    path.write_text(base + route.format("one"))
    args = ("--admin-port", "0", "--config", str(path))
    with (
        ServerProcess("gateway", *args, ready=["gateway"]) as gw,
        socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock,
    ):
        assert get(sock, "/one").startswith(b"HTTP/1.1 200")
        path.write_text(base + route.format("one") + route.format("two"))
        gw.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in gw.output_tail())
        # The same connection, opened before the reload, is served under the new config.
        assert get(sock, "/two").startswith(b"HTTP/1.1 200")
        assert get(sock, "/one").startswith(b"HTTP/1.1 200")
