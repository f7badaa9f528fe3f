"""The gateway as a process, through sockets, in front of stub upstreams."""

from __future__ import annotations

import re

import pytest


def test_routing_and_prefix_strip(gateway, stubs, h):
    r = h.request(gateway.port, "GET", "/public/items?x=1")
    assert r.status == 200
    assert r.json()["target"] == "/public/items?x=1"
    assert r.json()["port"] in stubs[:2]
    r = h.request(gateway.port, "GET", "/svc/inner/path?q=a%20b")
    assert r.json()["target"] == "/inner/path?q=a%20b"
    assert h.request(gateway.port, "GET", "/svc").json()["target"] == "/"
    assert h.request(gateway.port, "GET", "/nowhere").status == 404
    assert h.request(gateway.port, "GET", "/publicity").status == 404


def test_round_robin_spreads_over_both_members(gateway, stubs, h):
    ports = {h.request(gateway.port, "GET", "/public/rr").json()["port"] for _ in range(4)}
    assert ports == set(stubs[:2])


def test_own_healthz(gateway, h):
    r = h.request(gateway.port, "GET", "/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("raw_path", "expected_status"),
    [
        ("/public/../private/x", 401),  # the canonical path is /private/x: auth applies
        ("/public/%2e%2e/private/x", 401),
        ("/public/%2E%2E%2Fprivate", 401),
        ("//private//x", 401),
        ("/public/./x/../y", 200),
        ("/public/%zz", 400),
        ("/public/%00", 400),
    ],
)
def test_path_tricks_cannot_reach_a_route_the_canonical_path_does_not(
    gateway, h, raw_path, expected_status
):
    assert h.request(gateway.port, "GET", raw_path).status == expected_status


def test_upstream_gets_the_canonical_path(gateway, h):
    assert h.request(gateway.port, "GET", "/public/a/../b//c").json()["target"] == "/public/b/c"


def test_auth_missing_wrong_and_right(gateway, h):
    r = h.request(gateway.port, "GET", "/private/x")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="minisys"'
    assert r.headers["Content-Type"] == "application/problem+json"
    r = h.request(gateway.port, "GET", "/private/x", {"X-API-Key": "wrong-key-000"})
    assert r.status == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    r = h.request(gateway.port, "GET", "/private/x", {"Authorization": "Bearer bob-key-00001"})
    assert r.status == 200
    seen = r.upstream_headers()
    assert seen["x-consumer-id"] == "bob"
    assert "authorization" not in seen and "x-api-key" not in seen


def test_consumer_not_allowed_on_route_is_403(gateway, h):
    assert h.request(gateway.port, "GET", "/admin", {"X-API-Key": "bob-key-00001"}).status == 403
    assert h.request(gateway.port, "GET", "/admin", {"X-API-Key": "alice-key-0001"}).status == 200


def test_client_cannot_spoof_consumer_id(gateway, h):
    r = h.request(
        gateway.port, "GET", "/private/x", {"X-API-Key": "bob-key-00001", "X-Consumer-ID": "alice"}
    )
    assert r.upstream_headers()["x-consumer-id"] == "bob"
    r = h.request(gateway.port, "GET", "/public/x", {"X-Consumer-ID": "alice"})
    assert "x-consumer-id" not in r.upstream_headers()


def jwt(claims, secret="alice-secret", header=None):
    from gateway.auth import encode_jwt

    return encode_jwt(claims, secret, header)


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (lambda now: jwt({"iss": "alice-iss", "exp": now + 60}), 200),
        (lambda now: jwt({"iss": "alice-iss", "exp": now - 3600}), 401),
        (lambda now: jwt({"iss": "alice-iss"}, header={"alg": "none"}), 401),
        (lambda now: jwt({"iss": "alice-iss"}, secret="not-the-secret"), 401),
        (lambda now: jwt({"iss": "alice-iss"})[:-3] + "abc", 401),
        (lambda now: jwt({"iss": "nobody"}), 401),
    ],
    ids=["valid", "expired", "alg-none", "wrong-secret", "tampered", "unknown-issuer"],
)
def test_jwt_cases(gateway, h, token, status):
    import time

    r = h.request(gateway.port, "GET", "/admin", {"Authorization": f"Bearer {token(time.time())}"})
    assert r.status == status
    if status == 200:
        assert r.upstream_headers()["x-consumer-id"] == "alice"


def test_consumer_limit_429_with_headers(gateway, h):
    key = {"X-API-Key": "carol-key-0001"}
    replies = [h.request(gateway.port, "GET", "/limited", key) for _ in range(4)]
    assert [r.status for r in replies] == [200, 200, 200, 429]
    first = replies[0].headers
    assert first["RateLimit-Policy"] == '"consumer";q=3;w=60'
    assert first["RateLimit"] == '"consumer";r=2;t=20'
    assert (first["X-RateLimit-Limit"], first["X-RateLimit-Remaining"]) == ("3", "2")
    refused = replies[3]
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Policy"] == '"consumer";q=3;w=60'
    assert refused.json()["status"] == 429
    assert refused.json()["violated-policies"] == ["consumer"]
    # Carol's limit is hers alone: Bob is not affected.
    assert h.request(gateway.port, "GET", "/limited", {"X-API-Key": "bob-key-00001"}).status == 200


def test_anonymous_limit_is_per_client_address_and_ignores_x_forwarded_for(gateway, h):
    statuses = [
        h.request(gateway.port, "GET", "/anon", {"X-Forwarded-For": f"10.0.0.{i}"}).status
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_proxy_v1_from_trusted_lb_sets_the_client_address(gateway, h):
    line = b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 8081\r\n"
    req = (
        b"GET /public/p HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 10.9.9.9\r\n"
        b"Connection: close\r\n\r\n"
    )
    reply = h.raw(gateway.port, line + req, source="127.0.0.2")
    assert reply.startswith(b"HTTP/1.1 200")
    body = reply.split(b"\r\n\r\n", 1)[1]
    import json

    seen = {n.lower(): v for n, v in json.loads(body)["headers"]}
    # The lb is an L4 proxy: the X-Forwarded-For on this connection is the client's own.
    assert seen["x-forwarded-for"] == "198.51.100.7"
    # Each proxied client address gets its own anonymous bucket.
    for ip in ("198.51.100.8", "198.51.100.9"):
        line = f"PROXY TCP4 {ip} 127.0.0.1 40000 8081\r\n".encode()
        anon = b"GET /anon HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
        assert h.raw(gateway.port, line + anon, source="127.0.0.2").startswith(b"HTTP/1.1 200")


def test_proxy_v1_from_untrusted_peer_is_refused(gateway, h):
    line = b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 8081\r\n"
    req = b"GET /public/p HTTP/1.1\r\nHost: shop\r\n\r\n"
    assert h.raw(gateway.port, line + req).startswith(b"HTTP/1.1 400")


def test_bad_proxy_line_from_trusted_peer_is_refused(gateway, h):
    reply = h.raw(
        gateway.port, b"PROXY TCP4 nonsense\r\nGET / HTTP/1.1\r\n\r\n", source="127.0.0.2"
    )
    assert reply.startswith(b"HTTP/1.1 400")


def test_forwarded_headers_and_via(gateway, h):
    r = h.request(
        gateway.port,
        "GET",
        "/public/f",
        {"Host": "shop.example:8081", "X-Forwarded-For": "6.6.6.6", "Via": "1.0 earlier"},
    )
    seen = r.upstream_headers()
    assert seen["x-forwarded-for"] == "127.0.0.1"  # untrusted client: its XFF is dropped
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "shop.example:8081"
    assert seen["host"] == "shop.example:8081"
    assert seen["via"] == "1.0 earlier, 1.1 minisys-gateway"
    assert r.headers["Via"] == "1.1 minisys-gateway"


def test_request_id_kept_minted_or_replaced(gateway, h):
    r = h.request(gateway.port, "GET", "/public/id", {"X-Request-ID": "abc-123.XYZ"})
    assert r.headers["X-Request-ID"] == "abc-123.XYZ"
    assert r.upstream_headers()["x-request-id"] == "abc-123.XYZ"
    r = h.request(gateway.port, "GET", "/public/id")
    minted = r.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", minted)
    assert r.upstream_headers()["x-request-id"] == minted
    r = h.request(gateway.port, "GET", "/public/id", {"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-ID"])
    # Refusals carry it too.
    r = h.request(gateway.port, "GET", "/private/x", {"X-Request-ID": "refused-1"})
    assert r.status == 401 and r.headers["X-Request-ID"] == "refused-1"


def test_hop_by_hop_stripped_in_both_directions(gateway, h):
    r = h.request(
        gateway.port,
        "GET",
        "/public/hop-in",
        {
            "Connection": "X-Secret, X-Forwarded-For, keep-alive",
            "X-Secret": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Upgrade": "websocket",
            "Proxy-Authorization": "Basic eA==",
            "X-Normal": "kept",
        },
    )
    seen = r.upstream_headers()
    for name in ("connection", "x-secret", "keep-alive", "te", "upgrade", "proxy-authorization"):
        assert name not in seen, name
    assert seen["x-normal"] == "kept"
    assert seen["x-forwarded-for"] == "127.0.0.1"  # naming it in Connection did not remove ours
    r = h.request(gateway.port, "GET", "/svc/hop")
    for name in ("X-Private", "Keep-Alive", "Proxy-Authenticate", "Trailer", "Upgrade"):
        assert name not in r.headers, name
    assert r.headers["X-Public"] == "ok"
    assert r.body == b"hop"


def test_post_body_is_forwarded_with_exact_length(gateway, h):
    r = h.request(
        gateway.port,
        "POST",
        "/public/orders",
        {"Content-Type": "application/json"},
        b'{"sku":"A1"}',
    )
    assert r.json()["body"] == '{"sku":"A1"}'
    assert r.upstream_headers()["content-length"] == "12"
    chunked = (
        b"POST /public/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    reply = h.raw(gateway.port, chunked)
    assert reply.startswith(b"HTTP/1.1 200")
    import json

    doc = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert doc["body"] == "hello world"
    seen = {n.lower(): v for n, v in doc["headers"]}
    assert seen["content-length"] == "11" and "transfer-encoding" not in seen


def test_body_and_header_limits(gateway, stubs, h):
    # Raw sockets: the engine answers these before a request exists, and closes.
    before = len(h.stub_log(stubs[0])) + len(h.stub_log(stubs[1]))
    big_body = b"POST /public/big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
    assert h.raw(gateway.port, big_body).startswith(b"HTTP/1.1 413")
    big_head = b"GET /public/big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 3000 + b"\r\n\r\n"
    assert h.raw(gateway.port, big_head).startswith(b"HTTP/1.1 431")
    after = len(h.stub_log(stubs[0])) + len(h.stub_log(stubs[1]))
    assert after == before


def test_timeout_is_504(gateway, h):
    r = h.request(gateway.port, "GET", "/svc/slow?ms=3000")
    assert r.status == 504
    assert r.headers["Content-Type"] == "application/problem+json"


def test_dead_member_is_retried_on_the_live_one(gateway, stubs, h):
    for _ in range(4):
        r = h.request(gateway.port, "GET", "/flaky/x")
        assert r.status == 200
        assert r.json()["port"] == stubs[0]


def test_upstream_status_passes_through(gateway, h):
    r = h.request(gateway.port, "GET", "/svc/status/418")
    assert r.status == 418 and r.headers["X-Stub"] == "1"
    assert h.request(gateway.port, "HEAD", "/svc/status/200").status == 200
    assert h.request(gateway.port, "POST", "/nowhere").status == 404


def test_concurrency_limit_per_consumer(gateway, h):
    import threading

    key = {"X-API-Key": "erin-key-00001"}
    slow: list = []
    thread = threading.Thread(
        target=lambda: slow.append(h.request(gateway.port, "GET", "/authsvc/slow?ms=400", key))
    )
    thread.start()
    from minisys.testing import wait_until

    def busy():
        consumers = h.request(gateway.admin, "GET", "/consumers").json()
        return consumers["in_flight"].get("erin") == 1

    wait_until(busy, timeout=10)
    r = h.request(gateway.port, "GET", "/authsvc/x", key)
    assert r.status == 429
    assert r.json()["detail"] == "too many concurrent requests"
    assert r.headers["Retry-After"] == "1"
    thread.join(10)
    assert slow[0].status == 200
    assert h.request(gateway.port, "GET", "/authsvc/x", key).status == 200


def test_proxy_line_split_across_packets(gateway, h):
    import socket

    data = (
        b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 8081\r\n"
        b"GET /public/split HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", gateway.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 7):
            sock.sendall(data[i : i + 7])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert b'"X-Forwarded-For", "203.0.113.9"' in reply


def test_trusted_http_proxy_keeps_and_extends_x_forwarded_for(gateway, h):
    req = b"GET /public/p HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 10.9.9.9\r\n"
    reply = h.raw(gateway.port, req + b"Connection: close\r\n\r\n", source="127.0.0.2")
    assert b'"X-Forwarded-For", "10.9.9.9, 127.0.0.2"' in reply
