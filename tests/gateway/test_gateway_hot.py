"""The hot path (gateway/hot.py) forwards and answers exactly as the general path does.

Two gateways with the same configuration run side by side in one event loop, one with the
hot path and one without, in front of one raw upstream stub that records every request's
bytes and answers with the bytes a test scripts. Each request goes to both; the upstream
must receive the same bytes from both and the client must get the same bytes back (the
Date line and a minted request id aside). Plain requests and responses must take the hot
path; anything unusual must fall back to the general one - and still come out the same.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway.hot as hot_module
from gateway.config import build
from gateway.pipeline import Gateway
from gateway.proxy import GatewayConnection
from gateway.upstream import HttpTransport
from minisys.http.head import Limits
from minisys.http.server import HttpSettings, http_server
from minisys.http.testkit import read_responses
from minisys.server import ServerConfig

KEY = "hot-test-key"
CONFIG = """
[gateway]
access_log = false
[upstreams.app]
members = ["127.0.0.1:{port}"]
[[routes]]
name = "api"
path = "/api"
upstream = "app"
auth = true
[[routes]]
name = "open"
path = "/open"
upstream = "app"
strip_prefix = true
client_limit = {{ quota = 1000000000, window = 1, burst = 10 }}
[consumers.c1]
keys = ["{key}"]
limit = {{ quota = 1000000000, window = 1, burst = 10 }}
"""
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Stub(asyncio.Protocol):
    """The upstream: records each whole request, answers with `world["reply"]`."""

    def __init__(self, world: dict) -> None:
        self.world = world
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        m = re.search(rb"\r\ncontent-length: ([0-9]+)\r\n", self.buffer[: end + 2], re.I)
        total = end + 4 + (int(m.group(1)) if m else 0)
        if len(self.buffer) < total:
            return
        self.world["received"].append(self.buffer[:total])
        self.buffer = self.buffer[total:]
        reply = self.world["reply"]
        self.transport.write(reply)
        if b"Connection: close" in reply or b"HTTP/1.0" in reply[:8]:
            self.transport.close()


@pytest.fixture(scope="module")
def pair():
    """(world, hot port, general port); world["taken"] records take_request's answers."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    world: dict = {"received": [], "reply": OK, "taken": []}
    servers = []

    async def start() -> tuple[int, int]:
        stub = await loop.create_server(lambda: Stub(world), "127.0.0.1", 0)
        servers.append(stub)
        port = stub.sockets[0].getsockname()[1]
        cfg = build(tomllib.loads(CONFIG.format(port=port, key=KEY)))
        ports = []
        for hot in (True, False):
            gw = Gateway(cfg, transport_factory=HttpTransport)
            world.setdefault("gateways", []).append(gw)

            def take(conn, data, gw=gw):
                taken = gw.hot.take_request(conn, data)
                world["taken"].append(taken)
                return taken

            limits = Limits(max_body=cfg.max_body, max_header_bytes=cfg.max_header)
            server = http_server(
                "gateway", ServerConfig(idle_timeout=0), gw.handle,
                settings=HttpSettings(limits=limits, server_header=""),
                connection_factory=lambda handle, s, gw=gw, take=take if hot else None: (
                    GatewayConnection(handle, s, [], gw.handle_now, take)
                ),
            )  # fmt: skip
            await server.start()
            servers.append(server)
            ports.append(server.address[1])
        return ports[0], ports[1]

    hot_port, general_port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield world, hot_port, general_port

    async def stop() -> None:
        for server in servers[1:]:
            await server.drain_and_close()
        servers[0].close()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def exchange(port: int, data: bytes, method: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        responses, _, raw = read_responses(sock, 1, method=method)
    assert responses, "no response"
    return raw


def normalized(data: bytes, minted: bool) -> bytes:
    data = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", data)
    if minted:
        data = re.sub(rb"X-Request-ID: [0-9a-f]{32}\r\n", b"X-Request-ID: minted\r\n", data)
    return data


def both(pair, request: bytes, reply: bytes = OK, minted: bool = False):
    """Send `request` to both gateways; returns (taken by the hot path?, upstream requests
    as the hot one sent them, its client response), after checking both paths agree."""
    world, hot_port, general_port = pair
    world["reply"] = reply
    method = request.split(b" ", 1)[0].decode()
    outcomes = []
    for port in (hot_port, general_port):
        world["received"].clear()
        world["taken"].clear()
        answer = exchange(port, request, method)
        sent = [normalized(r, minted) for r in world["received"]]
        outcomes.append((any(world["taken"]), sent, normalized(answer, minted)))
    (taken, hot_sent, hot_answer), (_, general_sent, general_answer) = outcomes
    assert hot_sent == general_sent
    assert hot_answer == general_answer
    assert accounts(world["gateways"][0]) == accounts(world["gateways"][1])
    return taken, hot_sent, hot_answer


def accounts(gw: Gateway) -> tuple:
    """What the gateway counted so far: breaker, members, and every counter metric."""
    pool = gw.pools["app"]
    members = [(m.requests, m.active, m.failures) for m in pool.members]
    counters = [
        line for line in gw.metrics.registry.render().splitlines()
        if line.startswith(("gateway_requests_total", "gateway_ratelimited", "gateway_auth",
                            "gateway_upstream", "gateway_request_duration_seconds_count"))
    ]  # fmt: skip
    return pool.breaker.state, pool.breaker.failures, members, counters


# --- random plain requests and responses -------------------------------------------------

TCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
names = st.text(TCHAR, min_size=1, max_size=10).map(lambda s: "X-" + s)
values = st.from_regex(r"[!-~]([ -~]{0,20}[!-~])?", fullmatch=True)
# Dot segments ("." or "..") may leave the route: test_unusual_requests covers them.
segment = st.text("abcxyz019-._~", min_size=1, max_size=6).filter(lambda s: s.strip("."))
segments = st.lists(segment, max_size=3)
queries = st.one_of(st.just(""), st.from_regex(r"\?[a-z0-9=&]{0,12}", fullmatch=True))


@st.composite
def plain_requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    route = draw(st.sampled_from(["/api", "/open"]))
    target = route + "/" + "/".join(draw(segments)) + draw(queries)
    fields = [(draw(st.sampled_from(["Host", "host", "HOST"])), draw(st.sampled_from(
        ["example.test", "127.0.0.1:8081"])))]  # fmt: skip
    credential = draw(st.sampled_from(["X-API-Key", "x-api-key", "Authorization"]))
    fields.append((credential, ("Bearer " if credential == "Authorization" else "") + KEY))
    minted = True
    rid = draw(st.sampled_from(["none", "good", "bad"]))
    if rid != "none":
        minted = rid == "bad"
        fields.append(("X-Request-ID", "req-42.a:b" if rid == "good" else "bad!id"))
    fields += draw(st.lists(st.tuples(names, values), max_size=4))
    if draw(st.booleans()):
        fields.append(("Connection", "keep-alive"))
    body = draw(st.binary(max_size=40))
    if body or draw(st.booleans()):
        fields.append(("Content-Length", str(len(body))))
    fields = draw(st.permutations(fields))
    head = "".join(f"{n}: {v}\r\n" for n, v in fields)
    return f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode() + body, minted


@st.composite
def plain_responses(draw):
    status = draw(st.sampled_from(
        [b"200 OK", b"201 Created", b"202 Accepted", b"404 Not Found", b"409 Conflict",
         b"500 Internal Server Error", b"418 I'm a teapot"]))  # fmt: skip
    body = draw(st.binary(max_size=60))
    fields = [(b"Content-Length", str(len(body)).encode())]
    optional = [(b"Content-Type", b"application/json"), (b"Server", b"stub/1.0"),
                (b"Date", b"Mon, 30 Nov 2026 04:00:00 GMT"), (b"Keep-Alive", b"timeout=5"),
                (b"Connection", b"keep-alive"), (b"X-Request-ID", b"upstream-id"),
                (b"Cache-Control", b"no-store, max-age=0")]  # fmt: skip
    fields += [f for f in optional if draw(st.booleans())]
    fields += [
        (n.encode(), v.encode()) for n, v in draw(st.lists(st.tuples(names, values), max_size=3))
    ]
    fields = draw(st.permutations(fields))
    head = b"".join(n + b": " + v + b"\r\n" for n, v in fields)
    return b"HTTP/1.1 " + status + b"\r\n" + head + b"\r\n" + body


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=plain_requests(), reply=plain_responses())
def test_plain_requests_take_the_hot_path_and_match_the_general_path(pair, request, reply):
    data, minted = request
    taken, sent, answer = both(pair, data, reply, minted)
    assert taken
    assert len(sent) == 1 and b"\r\nVia: 1.1 minisys-gateway\r\n" in sent[0]
    assert b"RateLimit-Policy: " in answer


def test_the_hot_path_strips_credentials_and_adds_the_consumer(pair):
    request = b"GET /api/x HTTP/1.1\r\nHost: h\r\nX-API-Key: " + KEY.encode() + b"\r\n\r\n"
    taken, sent, answer = both(pair, request, minted=True)
    assert taken
    assert KEY.encode() not in sent[0] and b"\r\nX-Consumer-ID: c1\r\n" in sent[0]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok")


# --- anything unusual falls back, and still matches --------------------------------------

GET = b"GET /api/x HTTP/1.1\r\nHost: h\r\nX-API-Key: " + KEY.encode() + b"\r\n"
UNUSUAL_REQUESTS = {
    "chunked": GET.replace(b"GET", b"POST")
    + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    "connection close": GET + b"Connection: close\r\n\r\n",
    "upgrade": GET + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "expect": GET.replace(b"GET", b"POST") + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    "x-forwarded-for": GET + b"X-Forwarded-For: 10.0.0.1\r\n\r\n",
    "via": GET + b"Via: 1.0 other\r\n\r\n",
    "tab in value": GET + b"X-Thing: a\tb\r\n\r\n",
    "no space after colon": GET + b"X-Thing:value\r\n\r\n",
    "trailing space": GET + b"X-Thing: value \r\n\r\n",
    "head": GET.replace(b"GET", b"HEAD") + b"\r\n",
    "http/1.0": GET.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n",
    "bare lf": GET.replace(b"\r\n", b"\n") + b"\n",
    "two hosts": GET + b"Host: other\r\n\r\n",
    "two request ids": GET + b"X-Request-ID: a\r\nX-Request-ID: b\r\n\r\n",
    "wrong key": GET.replace(KEY.encode(), b"nope") + b"\r\n",
    "no credentials": b"GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n",
    "no route": b"GET /elsewhere HTTP/1.1\r\nHost: h\r\n\r\n",
    "dot segments": b"GET /open/../api/x HTTP/1.1\r\nHost: h\r\n\r\n",
    "healthz": b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n",
    "pipelined": GET + b"\r\n" + GET + b"\r\n",
    "short body": GET.replace(b"GET", b"POST") + b"Content-Length: 5\r\n\r\nab",
    "obs-fold": GET + b"X-Thing: a\r\n b\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(UNUSUAL_REQUESTS))
def test_unusual_requests_fall_back_to_the_general_path(pair, name):
    request = UNUSUAL_REQUESTS[name]
    if name in ("pipelined", "short body"):
        return _sent_whole_later(pair, request)
    taken, _, _ = both(pair, request, minted=True)
    assert not taken


def _sent_whole_later(pair, request):
    """Bytes that are not one whole request in one read (pipelined, a body still coming):
    whatever reads they arrive in, both gateways forward and answer them alike."""
    world, *ports = pair
    world["reply"] = OK
    seen = []
    for port in ports:
        world["received"].clear()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request)
            if request.endswith(b"ab"):
                sock.sendall(b"cde")
            responses, _, _ = read_responses(sock, 2 if request.count(b"GET") == 2 else 1)
        assert [status for status, _ in responses] in ([200, 200], [200])
        seen.append([normalized(r, True) for r in world["received"]])
    assert seen[0] == seen[1]
    assert accounts(world["gateways"][0]) == accounts(world["gateways"][1])


UNUSUAL_RESPONSES = {
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "connection close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "via": b"HTTP/1.1 200 OK\r\nVia: 1.1 app\r\nContent-Length: 2\r\n\r\nok",
    "no content-length": b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
    "304": b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
    "empty reason": b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
    "http/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "tab in value": b"HTTP/1.1 200 OK\r\nX-A: a\tb\r\nContent-Length: 2\r\n\r\nok",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "103 first": b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK,
    "connection names a field": b"HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: b\r\n"
    b"Content-Length: 2\r\n\r\nok",
    "502": b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\n\r\nno",
}


@pytest.mark.parametrize("name", sorted(UNUSUAL_RESPONSES))
def test_unusual_responses_fall_back_and_match(pair, name, monkeypatch):
    scans = []

    def recording(data, limits, scan=hot_module.scan_response):
        result = scan(data, limits)
        scans.append(result is not None)
        return result

    monkeypatch.setattr(hot_module, "scan_response", recording)
    both(pair, GET + b"X-Request-ID: fixed\r\n\r\n", UNUSUAL_RESPONSES[name])
    if name == "502":
        assert scans and all(scans)  # plain, taken raw, counted as a breaker failure
    else:
        assert not any(scans)
