"""Socket tests of the splice: bytes intact both ways, half-close, retries, limits, memory."""

import asyncio
import contextlib
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from lb.backend import Backend
from lb.splice import SMALL_READ, SPLICE_BUFFER, Splice
from minisys.poller import make_poller
from minisys.proxyproto import parse_v1
from minisys.testing import async_wait_until


def run(coro):
    return asyncio.run(coro)


@settings(max_examples=15)
@given(st.lists(st.binary(min_size=1, max_size=20000), min_size=1, max_size=8))
def test_random_payloads_and_splits_arrive_intact_both_ways(kit, chunks):
    async def main():
        echo = await kit.EchoBackend().start()
        async with kit.running_lb([kit.make_backend(echo.port)]) as (server, _):
            reader, writer = await asyncio.open_connection(*server.address)
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
            echoed = await kit.read_all(reader)
            writer.close()
            assert echoed == b"".join(chunks)
            await async_wait_until(_true(lambda: echo.received), timeout=5)
            assert echo.received == [b"".join(chunks)]
        await echo.stop()

    run(main())


def _true(predicate):
    async def check():
        return predicate()

    return check


def test_half_close_keeps_the_other_direction_open(kit):
    async def main():
        # The backend answers only after the client's EOF: if the lb closed the whole
        # connection on that EOF, the answer would be lost.
        async def late_answer(reader, writer):
            data = await reader.read()
            writer.write(b"got " + str(len(data)).encode())
            await writer.drain()
            writer.close()

        backend = await asyncio.start_server(late_answer, "127.0.0.1", 0)
        port = backend.sockets[0].getsockname()[1]
        async with kit.running_lb([kit.make_backend(port)]) as (server, _):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"x" * 100_000)
            writer.write_eof()
            assert await kit.read_all(reader) == b"got 100000"
            writer.close()
        backend.close()

    run(main())


def test_backend_half_close_reaches_the_client_which_can_still_send(kit):
    async def main():
        async def greeter(reader, writer):
            writer.write(b"hello")
            writer.write_eof()
            data = await reader.read()
            received.append(data)
            writer.close()

        received = []
        backend = await asyncio.start_server(greeter, "127.0.0.1", 0)
        port = backend.sockets[0].getsockname()[1]
        async with kit.running_lb([kit.make_backend(port)]) as (server, _):
            reader, writer = await asyncio.open_connection(*server.address)
            assert await kit.read_all(reader) == b"hello"
            writer.write(b"still talking")
            writer.write_eof()
            await async_wait_until(_true(lambda: received), timeout=5)
            assert received == [b"still talking"]
            writer.close()
        backend.close()

    run(main())


def test_connect_failures_are_retried_on_another_backend(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        dead = [kit.make_backend(await kit.unused_port(), eject_after=100) for _ in range(2)]
        live = kit.make_backend(echo.port)
        async with kit.running_lb([*dead, live], retries=2) as (server, balancer):
            for i in range(12):
                reader, writer = await asyncio.open_connection(*server.address)
                writer.write(b"ping %d" % i)
                writer.write_eof()
                assert await kit.read_all(reader) == b"ping %d" % i
                writer.close()
            assert sum(b.connect_failures for b in dead) > 0
            assert balancer.retries > 0
            assert all(b.active == 0 for b in (*dead, live))
        await echo.stop()

    run(main())


def test_repeated_connect_failures_eject_the_backend(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        dead = kit.make_backend(await kit.unused_port(), eject_after=2, eject_cooldown=60.0)
        async with kit.running_lb([dead, kit.make_backend(echo.port)]) as (server, _):
            for _ in range(10):
                reader, writer = await asyncio.open_connection(*server.address)
                writer.write_eof()
                await kit.read_all(reader)
                writer.close()
            # Ejected after its second failure: no further connects were tried.
            assert dead.connect_failures == 2
            assert dead.status(asyncio.get_running_loop().time()) == "EJECTED"
        await echo.stop()

    run(main())


def test_no_backend_at_all_closes_the_client(kit):
    async def main():
        dead = kit.make_backend(await kit.unused_port())
        async with kit.running_lb([dead], retries=1) as (server, balancer):
            reader, writer = await asyncio.open_connection(*server.address)
            assert await kit.read_all(reader) == b""
            writer.close()
            assert balancer.no_backend == 1

    run(main())


def test_send_proxy_prepends_the_real_client_address(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        async with kit.running_lb([kit.make_backend(echo.port)], send_proxy=True) as (server, _):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"payload")
            writer.write_eof()
            echoed = await kit.read_all(reader)
            header, used = parse_v1(echoed)
            local = writer.get_extra_info("sockname")
            assert header.source == (local[0], local[1])
            assert header.dst_port == server.address[1]
            assert echoed[used:] == b"payload"
            writer.close()
        await echo.stop()

    run(main())


def test_maxconn_queues_then_serves_in_order(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        backend = Backend("127.0.0.1", echo.port, maxconn=1)
        async with kit.running_lb([backend], queue_size=2, queue_timeout=30) as (server, balancer):
            first = await asyncio.open_connection(*server.address)
            first[1].write(b"a")
            assert await first[0].readexactly(1) == b"a"
            second = await asyncio.open_connection(*server.address)
            second[1].write(b"b")
            await async_wait_until(_true(lambda: len(balancer.queue) == 1), timeout=5)
            third = await asyncio.open_connection(*server.address)
            third[1].write(b"c")
            await async_wait_until(_true(lambda: len(balancer.queue) == 2), timeout=5)
            # The fourth finds the queue full and is refused.
            fourth = await asyncio.open_connection(*server.address)
            assert await kit.read_all(fourth[0]) == b""
            assert balancer.queue_full == 1
            assert backend.active == 1
            # Each connection that ends lets the oldest waiting one through.
            first[1].close()
            assert await second[0].readexactly(1) == b"b"
            second[1].close()
            assert await third[0].readexactly(1) == b"c"
            for _, w in (third, fourth):
                w.close()
        await echo.stop()

    run(main())


def test_queue_timeout_closes_the_waiting_client(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        backend = Backend("127.0.0.1", echo.port, maxconn=1)
        async with kit.running_lb([backend], queue_timeout=0.05) as (server, balancer):
            first = await asyncio.open_connection(*server.address)
            first[1].write(b"a")
            await first[0].readexactly(1)
            second = await asyncio.open_connection(*server.address)
            assert await kit.read_all(second[0]) == b""
            assert balancer.queue_timeouts == 1
            first[1].close()
            second[1].close()
        await echo.stop()

    run(main())


def test_lb_max_connections_refuses_the_excess(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        async with kit.running_lb([kit.make_backend(echo.port)], max_connections=1) as (server, _):
            first = await asyncio.open_connection(*server.address)
            first[1].write(b"a")
            await first[0].readexactly(1)
            second = await asyncio.open_connection(*server.address)
            assert await kit.read_all(second[0]) == b""
            assert server.refused == 1
            first[1].close()
            second[1].close()
        await echo.stop()

    run(main())


def test_idle_connections_are_closed(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        async with kit.running_lb([kit.make_backend(echo.port)], idle_timeout=0.2) as (server, _):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"a")
            await reader.readexactly(1)
            assert await kit.read_all(reader) == b""
            writer.close()
            # The backend side was closed too: its handler finished.
            await async_wait_until(_true(lambda: echo.received == [b"a"]), timeout=5)
        await echo.stop()

    run(main())


def test_slow_reader_does_not_make_the_lb_buffer_without_bound(kit):
    async def main():
        sent = 0
        stop = asyncio.Event()

        async def firehose(reader, writer):
            nonlocal sent
            block = b"z" * 65536
            while not stop.is_set():
                writer.write(block)
                sent += len(block)
                await writer.drain()
            writer.close()

        backend = await asyncio.start_server(firehose, "127.0.0.1", 0)
        port = backend.sockets[0].getsockname()[1]
        async with kit.running_lb([kit.make_backend(port)]) as (server, _):
            # A client with a small receive buffer that never reads.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, server.address)
            await async_wait_until(_true(lambda: sent > 0), timeout=5)
            # Let the firehose run until it is stuck: `sent` stops growing.
            last = -1
            while sent != last:
                last = sent
                await asyncio.sleep(0.2)
            (conn,) = server.connections
            # The lb holds at most one read for the client, nothing for the backend.
            to_backend, to_client = conn.splice.buffered()
            assert to_client <= SPLICE_BUFFER and to_backend == 0
            # Everything else sits in kernel socket buffers, i.e. TCP pushed back.
            assert sent < 64 * 1024 * 1024
            stop.set()
            sock.close()
        backend.close()

    run(main())


@settings(max_examples=10)
@given(st.lists(st.booleans(), min_size=1, max_size=5), st.sampled_from(["roundrobin", "p2c"]))
def test_a_client_never_sees_a_connect_failure_that_could_be_retried(kit, alive, algorithm):
    """With one live backend and retries >= dead backends, every client is served."""
    alive = [True, *alive]

    async def main():
        echo = await kit.EchoBackend().start()
        backends = [
            kit.make_backend(echo.port if up else await kit.unused_port(), eject_after=0)
            for up in alive
        ]
        # make_backend names must be unique: live ones share a port, so keep one.
        seen, unique = set(), []
        for b in backends:
            if b.name not in seen:
                seen.add(b.name)
                unique.append(b)
        dead = sum(1 for b in unique if b.port != echo.port)
        async with kit.running_lb(unique, algorithm, retries=dead) as (server, _):
            for i in range(6):
                reader, writer = await asyncio.open_connection(*server.address)
                writer.write(b"%d" % i)
                writer.write_eof()
                assert await kit.read_all(reader) == b"%d" % i
                writer.close()
        await echo.stop()

    run(main())


def test_a_client_that_leaves_the_queue_frees_its_place(kit):
    async def main():
        echo = await kit.EchoBackend().start()
        backend = Backend("127.0.0.1", echo.port, maxconn=1)
        async with kit.running_lb([backend], queue_size=1, queue_timeout=30) as (server, lb):
            first = await asyncio.open_connection(*server.address)
            first[1].write(b"a")
            await first[0].readexactly(1)
            second = await asyncio.open_connection(*server.address)
            await async_wait_until(_true(lambda: len(lb.queue) == 1), timeout=5)
            # A reset, not a FIN: a FIN may be a half-close from a client that still waits
            # for its answer, so it keeps its place until the queue timeout.
            sock = second[1].get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            second[1].transport.abort()
            await async_wait_until(_true(lambda: len(lb.queue) == 0), timeout=5)
            third = await asyncio.open_connection(*server.address)
            third[1].write(b"c")
            await async_wait_until(_true(lambda: len(lb.queue) == 1), timeout=5)
            first[1].close()
            assert await third[0].readexactly(1) == b"c"
            third[1].close()
            assert lb.queue_full == 0
        await echo.stop()

    run(main())


def test_reads_start_small_grow_for_bulk_and_shrink_back(kit):
    """A direction reads SMALL_READ at a time until a read fills it, then SPLICE_BUFFER
    until a read brings ≤ SMALL_READ again; every byte arrives either way."""

    async def main():
        poller = make_poller(asyncio.get_running_loop())
        client, client_peer = socket.socketpair()
        backend, backend_peer = socket.socketpair()
        for sock in (client, backend, backend_peer):
            sock.setblocking(False)
        splice = Splice(poller, client, backend, kit.make_backend(1), lambda exc: None)
        splice.start()
        got = bytearray()

        async def arrived(n):
            async def enough():
                with contextlib.suppress(BlockingIOError):
                    got.extend(backend_peer.recv(SPLICE_BUFFER))
                return len(got) >= n

            await async_wait_until(enough, timeout=5)

        assert splice.up.size == SMALL_READ
        client_peer.sendall(b"a" * 100)
        await arrived(100)
        assert splice.up.size == SMALL_READ
        bulk = bytes(range(256)) * 40  # 10240 bytes at once: the first read fills
        client_peer.sendall(bulk)
        await arrived(100 + len(bulk))
        assert splice.up.size == SPLICE_BUFFER
        client_peer.sendall(b"z" * 10)
        await arrived(110 + len(bulk))
        assert splice.up.size == SMALL_READ
        assert bytes(got) == b"a" * 100 + bulk + b"z" * 10
        splice.close()
        client_peer.close()
        backend_peer.close()

    run(main())
