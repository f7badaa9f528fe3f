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


class _ScriptedServer:
    """A raw TCP server that records each read and answers `+OK` to every command line
    it is told to (`answer`), so a test sees exactly what reached the socket and when."""

    def __init__(self, answer=lambda n: True) -> None:
        self.reads: list[bytes] = []
        self.commands = 0
        self.answer = answer
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[:2]

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer):
        while data := await reader.read(65536):
            self.reads.append(data)
            for _ in range(data.count(b"*")):  # one array per command in these tests
                self.commands += 1
                if self.answer(self.commands):
                    writer.write(b"+OK\r\n")
            await writer.drain()
        writer.close()


def test_commands_of_one_loop_turn_go_out_in_one_write():
    async def main():
        scripted = _ScriptedServer()
        async with scripted as (host, port):
            client = await RespClient.connect(host, port)
            transport = client._protocol.transport
            writes: list[bytes] = []
            real_write = transport.write
            transport.write = lambda data: (writes.append(data), real_write(data))[1]
            replies = await asyncio.gather(*(client.execute("SET", f"k{i}", i) for i in range(30)))
            assert replies == ["OK"] * 30
            # Thirty callers in one turn: one write of thirty commands, one read for the server.
            assert len(writes) == 1 and writes[0].count(b"*3\r\n") == 30
            assert len(scripted.reads) == 1
            assert await client.pipeline([("PING",), ("PING",)]) == ["OK", "OK"]
            assert len(writes) == 2
            await client.close()

    run(main())


def test_a_command_whose_reply_never_comes_times_out_though_earlier_ones_were_answered():
    async def main():
        scripted = _ScriptedServer(answer=lambda n: n <= 2)  # answers two, then goes silent
        async with scripted as (host, port):
            client = await RespClient.connect(host, port, read_timeout=0.2)
            assert await client.execute("PING") == "OK"
            assert await client.execute("PING") == "OK"
            loop = asyncio.get_running_loop()
            started = loop.time()
            first, second = await asyncio.gather(
                client.execute("PING"), client.execute("PING"), return_exceptions=True
            )
            assert isinstance(first, RespTimeout) and isinstance(second, RespTimeout)
            assert 0.15 < loop.time() - started < 5
            assert client.closed
            with pytest.raises(RespConnectionError):
                await client.execute("PING")

    run(main())


def test_replies_within_the_timeout_keep_the_connection():
    async def main():
        async with demo() as server:
            client = await RespClient.connect(*server.address, read_timeout=0.2)
            for _ in range(3):  # spans more than one timeout period in total
                assert await client.execute("PING") == "PONG"
                await asyncio.sleep(0.1)
            assert not client.closed and client.read_timeout == 0.2
            await client.close()

    run(main())


def test_a_cancelled_caller_closes_the_connection_and_fails_the_others():
    async def main():
        scripted = _ScriptedServer(answer=lambda n: False)  # never answers
        async with scripted as (host, port):
            client = await RespClient.connect(host, port, read_timeout=None)
            waiting = asyncio.ensure_future(client.execute("PING"))
            other = asyncio.ensure_future(client.execute("PING"))
            await async_wait_until(lambda: asyncio.sleep(0, scripted.commands == 2))
            waiting.cancel()
            with pytest.raises(RespConnectionError, match="cancelled"):
                await other  # its reply could now be mistaken for the cancelled one's
            assert client.closed

    run(main())
