"""The callback fast path: `HttpConnection.handle_now`/`answer_now` and `HttpClient.request_now`.

The server side: a request taken by `handle_now` keeps every promise of the general path
(order of pipelined responses, the handler timeout's 503, abandoning when the client goes).
The client side: `request_now` ends exactly as `request` would (pooling, timeouts, a stale
pooled connection retried once for idempotent methods, cancellation).
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from minisys.http.client import ClientError, ClientTimeout, HttpClient
from minisys.http.message import Request, Response
from minisys.http.server import HttpConnection, HttpSettings, http_server
from minisys.http.testkit import ServerThread, read_responses
from minisys.server import ServerConfig
from minisys.testing import wait_until


async def general(request: Request) -> Response:
    return Response(200, [], b"general " + request.path.encode())


class Fast(HttpConnection):
    """Answers /now at once, /later from a timer, /never not at all; the rest generally."""

    cancelled: list[str] = []

    def handle_now(self, request: Request) -> bool:
        if request.path == "/now":
            self.answer_now(request, Response(200, [], b"now"))
        elif request.path == "/later":
            loop = asyncio.get_running_loop()
            loop.call_later(0.02, self.answer_now, request, Response(201, [], b"later"))
        elif request.path == "/never":
            self.cancel_now = lambda: Fast.cancelled.append(request.path)
        elif request.path == "/bad":
            self.answer_now(request, "not a response")  # type: ignore[arg-type]
        elif request.path == "/boom":
            raise RuntimeError("bug in the fast handler")
        else:
            return False
        return True


def serve(handler_timeout: float = 60.0) -> ServerThread:
    settings = HttpSettings(handler_timeout=handler_timeout)
    return ServerThread(
        lambda c: http_server("t", c, general, settings=settings, connection_factory=Fast),
        ServerConfig(idle_timeout=0),
    )


def get(*paths: str, close: bool = True) -> bytes:
    data = b""
    for i, path in enumerate(paths):
        last = close and i == len(paths) - 1
        data += f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode()
        data += b"Connection: close\r\n\r\n" if last else b"\r\n"
    return data


def exchange(port: int, data: bytes, count: int | None = None) -> list[tuple[int, bytes]]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        return read_responses(s, count)[0]


def test_pipelined_fast_and_general_answers_keep_their_order():
    with serve() as srv:
        replies = exchange(srv.port, get("/later", "/now", "/other", "/later", "/now"))
    assert replies == [
        (201, b"later"), (200, b"now"), (200, b"general /other"), (201, b"later"), (200, b"now")
    ]  # fmt: skip


def test_handler_timeout_abandons_a_fast_request_with_503():
    Fast.cancelled.clear()
    with serve(handler_timeout=0.2) as srv:
        replies = exchange(srv.port, get("/never", "/now"))
    assert [status for status, _ in replies] == [503, 200]
    assert b"the handler timed out" in replies[0][1]
    assert Fast.cancelled == ["/never"]


def test_a_client_that_goes_away_abandons_the_fast_request():
    Fast.cancelled.clear()
    with serve() as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(get("/never", close=False))
            taken = lambda: any(c._now is not None for c in srv.server.connections)  # noqa: E731
            wait_until(taken)  # handle_now has the request
            # A reset, not a FIN: a half-closed client still gets its answer, as on the
            # general path; a connection that is gone abandons the request.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_until(lambda: Fast.cancelled == ["/never"])
        assert exchange(srv.port, get("/now")) == [(200, b"now")]  # the server is fine


def test_a_bad_fast_answer_or_a_failing_fast_handler_is_a_500():
    with serve() as srv:
        replies = exchange(srv.port, get("/bad", "/boom", "/now"))
    assert [status for status, _ in replies] == [500, 500, 200]


# --- the client ----------------------------------------------------------------------------


async def upstream(request: Request) -> Response:
    if request.path == "/hang":
        await asyncio.sleep(3600)
    return Response(200, [], request.method.encode() + b" " + request.path.encode())


async def with_upstream(test, handler=upstream):
    server = http_server("up", ServerConfig(idle_timeout=0, drain_timeout=0.1), handler)
    await server.start()
    try:
        return await test(*server.address)
    finally:
        await server.drain_and_close()


def now(client: HttpClient, method: str, url: tuple, **kw) -> asyncio.Future | None:
    """request_now with a future for the outcome; None if the fast path declined."""
    outcome = asyncio.get_running_loop().create_future()

    def then(response, exc):
        if exc is not None:
            outcome.set_exception(exc)
        else:
            outcome.set_result(response)

    cancel = client.request_now(method, url, [], b"", then, **kw)
    if cancel is None:
        return None
    outcome.cancel_request = cancel  # type: ignore[attr-defined]
    return outcome


def test_request_now_needs_a_warm_connection_then_reuses_it():
    async def test(host, port):
        async with HttpClient() as client:
            assert now(client, "GET", (host, port, "/a")) is None  # nothing pooled yet
            assert (await client.request("GET", (host, port, "/a"))).body == b"GET /a"
            for path in ("/b", "/c"):
                reply = await now(client, "GET", (host, port, path))
                assert (reply.status, reply.body) == (200, b"GET " + path.encode())
            assert client.connections_opened == 1

    asyncio.run(with_upstream(test))


def test_request_now_times_out_like_request():
    async def test(host, port):
        async with HttpClient() as client:
            await client.request("GET", (host, port, "/warm"))
            with pytest.raises(ClientTimeout, match=r"GET 127\.0\.0\.1:\d+/hang timed out"):
                await now(client, "GET", (host, port, "/hang"), timeout=0.1)
            # The timed-out connection was closed, not pooled: the next one is new.
            assert now(client, "GET", (host, port, "/x")) is None

    asyncio.run(with_upstream(test))


def test_cancelling_request_now_closes_its_connection_and_frees_the_slot():
    async def test(host, port):
        async with HttpClient(pool_size_per_origin=1) as client:
            await client.request("GET", (host, port, "/warm"))
            pending = now(client, "GET", (host, port, "/hang"))
            pending.cancel_request()
            reply = await asyncio.wait_for(client.request("GET", (host, port, "/ok")), 5)
            assert reply.body == b"GET /ok" and client.connections_opened == 2
            assert not pending.done()  # a cancelled request never calls back

    asyncio.run(with_upstream(test))


async def closes_second_request(reader, writer):
    """Answers a connection's first request, then closes on its second without a word."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_stale_pooled_connection_is_retried_only_for_idempotent_methods(method):
    async def test():
        server = await asyncio.start_server(closes_second_request, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        try:
            async with HttpClient() as client:
                await client.request("GET", (host, port, "/"))
                pending = now(client, method, (host, port, "/"))
                if method == "GET":  # retried on a fresh connection, which answers first
                    assert (await pending).body == b"first"
                    assert client.connections_opened == 2
                else:
                    with pytest.raises(ClientError, match="closed by the server") as caught:
                        await pending
                    assert caught.value.request_sent
        finally:
            server.close()

    asyncio.run(test())
