"""Connect outcomes (ok, refused, timeout) and admin changes that must not drop connections."""

import asyncio
import socket

from lb.backend import Admin
from lb.connect import open_connection


def blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose accept queue is full: further SYNs are dropped, connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(listener.getsockname())
        fillers.append(s)
    return listener, fillers


async def connect(port: int, timeout: float = 2.0):
    loop = asyncio.get_running_loop()
    outcome = loop.create_future()
    open_connection(
        loop,
        "127.0.0.1",
        port,
        timeout,
        lambda t, e: outcome.set_result((t, e)),
    )
    return await outcome


def test_open_connection_outcomes(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        sock, exc = await connect(echo.port)
        assert exc is None and sock.getpeername()[1] == echo.port
        assert not sock.getblocking()
        sock.close()
        sock, exc = await connect(await kit.unused_port())
        assert sock is None and "refused" in str(exc)
        listener, fillers = blackhole()
        sock, exc = await connect(listener.getsockname()[1], timeout=0.1)
        assert sock is None and isinstance(exc, TimeoutError)
        for s in (listener, *fillers):
            s.close()
        await echo.stop()

    asyncio.run(main())


def test_connect_timeout_is_retried_elsewhere(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        listener, fillers = blackhole()
        hole = kit.make_backend(listener.getsockname()[1])
        live = kit.make_backend(echo.port)
        async with kit.running_lb([hole, live], connect_timeout=0.1) as (server, balancer):
            for _ in range(2):
                reader, writer = await asyncio.open_connection(*server.address)
                writer.write(b"hi")
                writer.write_eof()
                assert await kit.read_all(reader) == b"hi"
                writer.close()
            assert hole.connect_failures >= 1
            assert balancer.retries == hole.connect_failures
        for s in (listener, *fillers):
            s.close()
        await echo.stop()

    asyncio.run(main())


def test_drain_and_remove_keep_established_connections(kit):
    async def main():
        a = await kit.EchoBackend(b"A").start()
        b = await kit.EchoBackend(b"B").start()
        ba, bb = kit.make_backend(a.port), kit.make_backend(b.port)
        async with kit.running_lb([ba, bb]) as (server, balancer):
            reader, writer = await asyncio.open_connection(*server.address)
            tag = await reader.readexactly(1)
            pinned, other = (ba, bb) if tag == b"A" else (bb, ba)
            loop_now = balancer.now()
            balancer.pool.set_admin(pinned.name, Admin.DRAINING, loop_now)
            # New clients all go to the other backend...
            for _ in range(3):
                r2, w2 = await asyncio.open_connection(*server.address)
                assert await r2.readexactly(1) != tag
                w2.close()
            # ...while the established one keeps flowing, even after removal.
            balancer.pool.remove(pinned.name)
            writer.write(b"still here")
            assert await reader.readexactly(10) == b"still here"
            writer.write_eof()
            assert await kit.read_all(reader) == b""
            writer.close()
            assert pinned.active == 0 or await _settled(pinned)
            assert other.name in balancer.pool.backends
        await a.stop()
        await b.stop()

    asyncio.run(main())


async def _settled(backend) -> bool:
    for _ in range(100):
        if backend.active == 0:
            return True
        await asyncio.sleep(0.01)
    return False
