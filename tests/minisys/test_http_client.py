"""The pooled HTTP client: reuse, framings, timeouts, stale connections, bad upstreams."""

from __future__ import annotations

import asyncio

import pytest

from minisys.http.client import BadResponse, ClientTimeout, ConnectError, HttpClient, split_url
from minisys.http.message import Request, Response
from minisys.http.server import http_server
from minisys.server import ServerConfig


async def echo(request: Request) -> Response:
    if request.path == "/hang":
        await asyncio.sleep(3600)
    body = b"%s %s %s" % (request.method.encode(), request.target.encode(), request.body)
    return Response(200, [("X-Host", request.headers.get("host", ""))], body)


async def with_server(test, handler=echo):
    # A short drain: the /hang handler never finishes, so shutdown must cut it off.
    server = http_server("t", ServerConfig(idle_timeout=0, drain_timeout=0.1), handler)
    await server.start()
    try:
        return await test(*server.address)
    finally:
        await server.drain_and_close()


async def raw_server(replies: list[bytes]):
    """A server that answers the n-th connection with replies[n] whatever it is asked."""
    count = 0

    async def on_client(reader, writer):
        nonlocal count
        reply = replies[min(count, len(replies) - 1)]
        count += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_keep_alive_reuses_one_connection():
    async def test(host, port):
        async with HttpClient() as client:
            for i in range(5):
                r = await client.request("POST", f"http://{host}:{port}/p?i={i}", body=b"x")
                assert r.status == 200 and r.body == b"POST /p?i=%d x" % i
                assert r.headers["x-host"] == f"{host}:{port}"
            assert client.connections_opened == 1

    asyncio.run(with_server(test))


def test_concurrent_requests_bounded_by_pool_size():
    async def test(host, port):
        async with HttpClient(pool_size_per_origin=3) as client:
            results = await asyncio.gather(*(client.get((host, port, f"/{i}")) for i in range(20)))
            assert [r.body for r in results] == [b"GET /%d " % i for i in range(20)]
            assert client.connections_opened <= 3

    asyncio.run(with_server(test))


def test_chunked_and_close_delimited_responses():
    async def test():
        server, port = await raw_server(
            [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
            ]
        )
        async with server, HttpClient() as client:
            first = await client.get(("127.0.0.1", port, "/"))
            second = await client.get(("127.0.0.1", port, "/"))
        assert first.body == b"abc" and second.body == b"until the end"

    asyncio.run(test())


def test_stale_pooled_connection_is_retried_for_get():
    async def test():
        # The server closes every connection right after answering, without saying so.
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        server, port = await raw_server([ok, ok])
        async with server, HttpClient() as client:
            assert (await client.get(("127.0.0.1", port, "/"))).body == b"ok"
            await asyncio.sleep(0)  # let the close arrive (either outcome is handled)
            assert (await client.get(("127.0.0.1", port, "/"))).body == b"ok"

    asyncio.run(test())


def test_bad_response_is_a_502_client_error():
    async def test():
        server, port = await raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
        async with server, HttpClient() as client:
            with pytest.raises(BadResponse) as info:
                await client.get(("127.0.0.1", port, "/"))
        assert info.value.status == 502 and info.value.request_sent

    asyncio.run(test())


def test_connect_refused_is_connect_error():
    async def test():
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        async with HttpClient() as client:
            with pytest.raises(ConnectError) as info:
                await client.get(("127.0.0.1", port, "/"))
        assert info.value.status == 502 and not info.value.request_sent

    asyncio.run(test())


def test_read_timeout_is_504():
    async def test(host, port):
        async with HttpClient(read_timeout=0.1) as client:
            with pytest.raises(ClientTimeout) as info:
                await client.get((host, port, "/hang"))
            assert info.value.status == 504
            # The timed-out connection is not reused; the next request works.
            assert (await client.get((host, port, "/ok"))).status == 200

    asyncio.run(with_server(test))


def test_total_timeout():
    async def test(host, port):
        async with HttpClient() as client:
            with pytest.raises(ClientTimeout):
                await client.get((host, port, "/hang"), timeout=0.1)

    asyncio.run(with_server(test))


def test_split_url():
    assert split_url("http://h:81/a?b=1") == ("h", 81, "/a?b=1")
    assert split_url("http://h") == ("h", 80, "/")
    with pytest.raises(ValueError):
        split_url("https://h/")
