"""The asyncio RESP client and pool against the in-process demo server."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from minisys.resp.client import RespClient, RespConnectionError, RespPool, RespTimeout
from minisys.resp.demo import demo_server
from minisys.resp.url import RedisURL, parse_redis_url
from minisys.resp.values import RespError
from minisys.server import ServerConfig
from minisys.testing import async_wait_until

CONFIG = ServerConfig(port=0, drain_timeout=2.0, idle_timeout=0)


@contextlib.asynccontextmanager
async def demo(**kwargs):
    server = demo_server(CONFIG, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.drain_and_close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_execute_pipeline_and_errors():
    async def main():
        async with demo() as server:
            client = await RespClient.connect(*server.address)
            assert await client.execute("SET", "k", 5) == "OK"
            assert await client.execute("GET", "k") == b"5"
            with pytest.raises(RespError) as info:
                await client.execute("GET")
            assert info.value.message == "ERR wrong number of arguments for 'get' command"
            replies = await client.pipeline([("SET", "a", "1"), ("NOPE",), ("GET", "a")])
            assert replies[0] == "OK" and replies[2] == b"1"
            assert isinstance(replies[1], RespError)
            assert await client.pipeline([]) == []
            await client.close()
            assert client.closed
            with pytest.raises(RespConnectionError):
                await client.execute("PING")

    run(main())


def test_concurrent_callers_share_one_connection_in_order():
    async def main():
        async with demo() as server:
            client = await RespClient.connect(*server.address)
            replies = await asyncio.gather(*(client.execute("ECHO", str(i)) for i in range(500)))
            assert replies == [str(i).encode() for i in range(500)]
            await client.close()

    run(main())


def test_read_timeout_fails_waiters_and_closes():
    async def main():
        async def silent(reader, writer):
            await reader.read()  # accept, read, never answer
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        client = await RespClient.connect(host, port, read_timeout=0.05)
        with pytest.raises(RespTimeout):
            await client.execute("PING")
        assert client.closed
        server.close()
        await server.wait_closed()

    run(main())


def test_connect_refused_is_a_connection_error():
    async def main():
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        with pytest.raises(RespConnectionError, match="cannot connect"):
            await RespClient.connect("127.0.0.1", port)

    run(main())


def test_auth_select_and_resp3_from_url():
    async def main():
        async with demo(requirepass="pw") as server:
            host, port = server.address
            with pytest.raises(RespError, match="NOAUTH"):
                bare = await RespClient.connect(host, port)
                try:
                    await bare.execute("GET", "k")
                finally:
                    await bare.close()
            client = await RespClient.from_url(f"redis://:pw@{host}:{port}/0")
            assert await client.execute("PING") == "PONG"
            await client.close()
            client3 = await RespClient.connect(host, port, password="pw", protocol=3)
            assert await client3.execute("HELLO") == {
                b"server": b"redis",
                b"version": b"7.0.15",
                b"proto": 3,
                b"id": (await client3.execute("CLIENT", "ID")),
                b"mode": b"standalone",
                b"role": b"master",
                b"modules": [],
            }
            await client3.close()
            with pytest.raises(RespError, match="DB index is out of range"):
                await RespClient.from_url(f"redis://:pw@{host}:{port}/3")
            with pytest.raises(RespError, match="WRONGPASS"):
                await RespClient.from_url(f"redis://:bad@{host}:{port}")

    run(main())


def test_pool_reuses_bounds_and_replaces_dead_connections():
    async def main():
        async with demo() as server:
            host, port = server.address
            pool = RespPool(f"redis://{host}:{port}", size=2)
            results = await asyncio.gather(*(pool.execute("SET", f"k{i}", i) for i in range(20)))
            assert results == ["OK"] * 20
            assert len(server.connections) <= 2
            async with pool.connection() as conn:
                # A server-side close the pool has not noticed yet (idle timeout, restart).
                await conn.execute("QUIT")
            assert await pool.execute("GET", "k7") == b"7"
            assert await pool.pipeline([("GET", "k1"), ("GET", "k2")]) == [b"1", b"2"]
            await pool.close()
            await async_wait_until(_no_connections(server), timeout=5)

    run(main())


def _no_connections(server):
    async def check():
        return not server.connections

    return check


def test_pool_from_host_and_port():
    pool = RespPool("10.0.0.1", 6380, size=1)
    assert pool.url == RedisURL(host="10.0.0.1", port=6380)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/0", RedisURL("127.0.0.1", 6380, 0)),
        ("redis://localhost", RedisURL("localhost", 6379, 0)),
        ("redis://:s3cret@h:1/2", RedisURL("h", 1, 2, None, "s3cret")),
        ("redis://user:p%40ss@h", RedisURL("h", 6379, 0, "user", "p@ss")),
        ("redis://h?db=4", RedisURL("h", 6379, 4)),
    ],
)
def test_parse_redis_url(url, expected):
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://h", "rediss://h", "redis://h/x", "redis://h:99999", "redis://h?timeout=1"]
)
def test_parse_redis_url_rejects(url):
    with pytest.raises(ValueError):
        parse_redis_url(url)


def test_in_flight_requests_are_bounded(monkeypatch):
    from minisys.resp import client as client_module

    monkeypatch.setattr(client_module, "MAX_IN_FLIGHT", 4)

    async def main():
        async with demo() as server:
            client = await RespClient.connect(*server.address)
            replies = await asyncio.gather(*(client.execute("ECHO", str(i)) for i in range(50)))
            assert replies == [str(i).encode() for i in range(50)]
            assert len(client._protocol.waiters) == 0
            await client.close()

    run(main())
