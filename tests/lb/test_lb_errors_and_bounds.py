"""The splice's remaining promises: a reset on one side closes the other, backpressure
holds in the client → backend direction too, early bytes are bounded, and the byte
counters behind /stats count what crossed."""

import asyncio
import socket
import struct

from lb.proxy import EARLY_DATA_LIMIT
from lb.splice import SPLICE_BUFFER
from minisys.testing import async_wait_until


def _true(predicate):
    async def check():
        return predicate()

    return check


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_a_backend_reset_closes_the_client(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        async with kit.running_lb([kit.make_backend(echo.port)]) as (server, _):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"hi")
            assert await reader.readexactly(2) == b"hi"
            reset(echo.writers[0])
            try:
                async with asyncio.timeout(5):
                    rest = await reader.read()
            except ConnectionResetError:
                rest = b""
            assert rest == b""
            await async_wait_until(_true(lambda: not server.connections), timeout=5)
            writer.close()
        await echo.stop()

    asyncio.run(main())


def test_a_client_reset_closes_the_backend_connection(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        backend = kit.make_backend(echo.port)
        async with kit.running_lb([backend]) as (server, _):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"hi")
            assert await reader.readexactly(2) == b"hi"
            reset(writer)
            # The echo handler ends (EOF or reset) once the lb closes its side.
            await async_wait_until(_true(lambda: echo.received), timeout=5)
            await async_wait_until(_true(lambda: backend.active == 0), timeout=5)
            assert not server.connections
        await echo.stop()

    asyncio.run(main())


def test_a_backend_that_does_not_read_pushes_back_on_the_client(kit):
    async def main():
        accepted = []

        async def never_reads(reader, writer):
            writer.transport.pause_reading()
            accepted.append(writer)

        backend = await asyncio.start_server(never_reads, "127.0.0.1", 0)
        port = backend.sockets[0].getsockname()[1]
        async with kit.running_lb([kit.make_backend(port)]) as (server, _):
            _reader, writer = await asyncio.open_connection(*server.address)
            sent = 0
            block = b"x" * 65536

            async def firehose():
                nonlocal sent
                while True:
                    writer.write(block)
                    sent += len(block)
                    await writer.drain()

            pump = asyncio.create_task(firehose())
            await async_wait_until(_true(lambda: sent > 0 and accepted), timeout=5)
            last = -1
            while sent != last:  # until TCP stops the client: `sent` stops growing
                last = sent
                await asyncio.sleep(0.2)
            (conn,) = server.connections
            # The lb holds at most one read for the backend, nothing for the client.
            to_backend, to_client = conn.splice.buffered()
            assert to_backend <= SPLICE_BUFFER and to_client == 0
            assert sent < 64 * 1024 * 1024
            pump.cancel()
            writer.transport.abort()
            for w in accepted:
                w.transport.abort()
        backend.close()

    asyncio.run(main())


def test_bytes_before_the_backend_connects_are_bounded(kit):
    """A backend that never finishes the handshake: the client's early bytes stop at the limit."""

    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        for _ in range(3):  # fill the accept queue: further SYNs are dropped, connects hang
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(listener.getsockname())
            fillers.append(s)
        hole = kit.make_backend(listener.getsockname()[1])
        async with kit.running_lb([hole], connect_timeout=30) as (server, _):
            _reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"e" * (4 * EARLY_DATA_LIMIT))
            await async_wait_until(
                _true(lambda: [len(c.early) for c in server.connections] == [EARLY_DATA_LIMIT]),
                timeout=5,
            )
            (conn,) = server.connections
            assert conn.splice is None and not conn.watching  # reading stopped at the limit
            writer.transport.abort()
        for s in (listener, *fillers):
            s.close()

    asyncio.run(main())


def test_byte_counters_count_both_directions(kit):
    async def main():
        echo = await kit.EchoBackend(b"tag:").start()
        backend = kit.make_backend(echo.port)
        async with kit.running_lb([backend]) as (server, _):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"x" * 10000)
            writer.write_eof()
            got = await kit.read_all(reader)
            writer.close()
            assert got == b"tag:" + b"x" * 10000
            await async_wait_until(_true(lambda: backend.active == 0), timeout=5)
            assert backend.bytes_in == 10000 and backend.bytes_out == 10004
            snapshot = backend.snapshot(0.0)
            assert (snapshot["bytes_in"], snapshot["bytes_out"], snapshot["total"]) == (
                10000,
                10004,
                1,
            )
        await echo.stop()

    asyncio.run(main())


def test_byte_counters_include_open_connections(kit):
    async def main():
        echo = await kit.EchoBackend(b"tag:").start()
        backend = kit.make_backend(echo.port)
        async with kit.running_lb([backend]) as (server, _):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"y" * 1000)
            assert await reader.readexactly(1004) == b"tag:" + b"y" * 1000
            assert backend.active == 1  # still open: its splice holds the counts
            assert (backend.bytes_in, backend.bytes_out) == (1000, 1004)
            writer.close()
            await async_wait_until(_true(lambda: backend.active == 0), timeout=5)
            assert (backend.bytes_in, backend.bytes_out) == (1000, 1004)  # counted once
        await echo.stop()

    asyncio.run(main())
