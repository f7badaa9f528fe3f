"""Issue 8 items checked at the transport and pool level: keep-alive reuse to upstreams,
connect timeouts (a silent member), and retries that never outlive the total timeout."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.breaker import BreakerSettings
from gateway.config import Upstream
from gateway.upstream import ConnectFailed, HttpTransport, UpstreamPool, UpstreamTimeout
from minisys.http.message import Request, Response
from minisys.http.server import http_server
from minisys.server import ServerConfig


def settings(members, *, connect_timeout=1.0, read_timeout=10.0, total=15.0, retries=2):
    return Upstream(
        "svc", members, connect_timeout, read_timeout, total, retries, 8,
        BreakerSettings(5, 10.0), "", 5.0,
    )  # fmt: skip


async def ok(request: Request) -> Response:
    return Response(200, [], b"ok")


def test_upstream_connections_are_pooled_keep_alive():
    async def main():
        server = http_server("up", ServerConfig(idle_timeout=0, drain_timeout=0.1), ok)
        await server.start()
        host, port = server.address
        transport = HttpTransport(settings([(host, port)]))
        try:
            for _ in range(5):
                reply = await transport.send(host, port, "GET", "/", [("Host", "x")], b"", 5.0)
                assert reply.status == 200
            return transport.client.connections_opened
        finally:
            await transport.close()
            await server.drain_and_close()

    assert asyncio.run(main()) == 1


@pytest.fixture
def silent_port():
    """A port whose accept queue is full, so a new connect hangs (its SYNs are dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # never accepted: they fill the queue of a backlog-0 listener
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for s in (*fillers, listener):
        s.close()


def test_connect_timeout_is_reported_as_timed_out(silent_port):
    async def main():
        transport = HttpTransport(settings([("127.0.0.1", silent_port)], connect_timeout=0.2))
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            with pytest.raises(ConnectFailed) as info:
                await transport.send("127.0.0.1", silent_port, "GET", "/", [], b"", 5.0)
        finally:
            await transport.close()
        return info.value, loop.time() - start

    error, elapsed = asyncio.run(main())
    assert error.timed_out, "a silent member is a connect *timeout* (the gateway answers 504)"
    assert 0.2 <= elapsed < 2.0


class SlowConnects:
    """Every connect takes `seconds` on the fake clock, then times out."""

    def __init__(self, clock, seconds):
        self.clock = clock
        self.seconds = seconds
        self.timeouts = []

    async def send(self, host, port, method, target, headers, body, timeout):
        self.timeouts.append((timeout, self.clock.left()))
        self.clock.now += self.seconds
        raise ConnectFailed("silent", timed_out=True)


class Clock:
    def __init__(self, total):
        self.now = 100.0
        self.deadline = self.now + total

    def __call__(self):
        return self.now

    def left(self):
        return self.deadline - self.now


def test_retries_stop_at_the_total_timeout():
    clock = Clock(total=15.0)
    members = [("127.0.0.1", 9000 + i) for i in range(6)]
    transport = SlowConnects(clock, seconds=6.0)
    pool = UpstreamPool(settings(members, total=15.0, retries=5), transport, clock)
    with pytest.raises(UpstreamTimeout):
        asyncio.run(pool.forward("GET", "/", [], b""))
    # 0 → 6 → 12 → 18 s: the third attempt may use only the 3 s left, and no fourth starts
    # although five retries were allowed.
    assert len(transport.timeouts) == 3
    assert all(timeout <= left for timeout, left in transport.timeouts)
    assert transport.timeouts[-1][0] == pytest.approx(3.0)
