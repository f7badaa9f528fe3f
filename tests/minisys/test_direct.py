"""minisys.direct: connections on raw sockets keep every promise of the kernel's Connection.

Each test runs on the loops of minisys/poller.py (epoll callbacks called straight from
the selector; DirectSelector and ServingSelector) and on a plain asyncio loop (the
LoopPoller fallback).
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile

from minisys.direct import WRITE_HIGH_WATER, DirectConnection, DirectServer
from minisys.server import ServerConfig
from minisys.testing import async_wait_until


class Echo(DirectConnection):
    """Echoes; `hold` answers nothing; `close` closes after the reply; `bye` half-closes."""

    events: list

    def on_connect(self) -> None:
        self.events = [("connect", self.peer)]
        # Small kernel buffers, so that a big reply cannot leave in one send.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # type: ignore[union-attr]
        self.server.log.append(self)  # type: ignore[attr-defined]

    def on_data(self, data: bytes) -> None:
        self.events.append(("data", data))
        if data.startswith(b"big"):
            self.write(b"x" * (4 * WRITE_HIGH_WATER) + b"END")
        elif data.startswith(b"close"):
            self.write(b"bye")
            self.close()
        elif data.startswith(b"busy"):
            self.set_busy(True)
        elif data.startswith(b"done"):
            self.write(b"finished")
            self.set_busy(False)
        else:
            self.write(data)

    def on_eof(self) -> bool | None:
        self.events.append(("eof",))
        if getattr(self.server, "keep_half_open", False):
            self.write(b"after-eof")
            return True
        return None

    def on_close(self, exc: Exception | None) -> None:
        self.events.append(("close", exc))

    def refusal(self) -> bytes:
        return b"FULL\r\n"


async def start(**config) -> DirectServer:
    server = DirectServer("t", ServerConfig(port=0, **config), Echo)
    server.log = []  # type: ignore[attr-defined]
    await server.start()
    return server


async def connect(server: DirectServer):
    return await asyncio.open_connection("127.0.0.1", server.address[1])


def test_round_trip_peer_and_close_once(run):
    async def main() -> None:
        server = await start()
        reader, writer = await connect(server)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.write(b"close")
        assert await reader.read() == b"bye"  # reply, then EOF
        conn = server.log[0]
        await async_wait_until(lambda: ("close", None) in conn.events)
        assert conn.events[0] == ("connect", writer.get_extra_info("sockname"))
        assert [e[0] for e in conn.events].count("close") == 1
        assert not server.connections
        writer.close()
        await server.drain_and_close()

    run(main)


def test_write_backpressure_keeps_order_and_pauses_reading(run):
    async def main() -> None:
        server = await start()
        reader, writer = await connect(server)
        # Shrink our receive buffer so the server's send cannot take it all at once.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        writer.write(b"big")
        await writer.drain()
        conn = server.log[0]
        await async_wait_until(lambda: conn._pending is not None)
        assert not conn._reading  # over the high-water mark: requests wait in the kernel
        writer.write(b"ping")
        data = await reader.readexactly(4 * WRITE_HIGH_WATER + 3)
        assert data.endswith(b"END") and data.count(b"x") == 4 * WRITE_HIGH_WATER
        assert await reader.readexactly(4) == b"ping"  # read again once all was sent
        assert conn._pending is None and conn._reading
        writer.close()
        await server.drain_and_close()

    run(main)


def test_close_sends_what_is_held_first(run):
    async def main() -> None:
        server = await start()
        reader, writer = await connect(server)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        writer.write(b"big")
        conn = server.log[0]
        await async_wait_until(lambda: conn._pending is not None)
        conn.close()
        data = await reader.read()  # everything, then EOF
        assert len(data) == 4 * WRITE_HIGH_WATER + 3
        await async_wait_until(lambda: not server.connections)
        writer.close()
        await server.drain_and_close()

    run(main)


def test_eof_closes_unless_the_protocol_keeps_it_half_open(run):
    async def main() -> None:
        server = await start()
        reader, writer = await connect(server)
        writer.write_eof()
        assert await reader.read() == b""
        conn = server.log[0]
        await async_wait_until(lambda: ("close", None) in conn.events)
        assert ("eof",) in conn.events
        server.keep_half_open = True  # type: ignore[attr-defined]
        reader, writer = await connect(server)
        writer.write_eof()
        assert await reader.readexactly(9) == b"after-eof"
        assert len(server.connections) == 1
        server.log[1].close()
        assert await reader.read() == b""
        writer.close()
        await server.drain_and_close()

    run(main)


def test_max_connections_refusal(run):
    async def main() -> None:
        server = await start(max_connections=1)
        r1, w1 = await connect(server)
        w1.write(b"a")
        assert await r1.readexactly(1) == b"a"
        r2, w2 = await connect(server)
        assert await r2.read() == b"FULL\r\n"
        assert server.refused == 1 and server.accepted == 1
        for w in (w1, w2):
            w.close()
        await server.drain_and_close()

    run(main)


def test_drain_waits_for_busy_connections(run):
    async def main() -> None:
        server = await start()
        r_idle, w_idle = await connect(server)
        r_busy, w_busy = await connect(server)
        w_busy.write(b"busy")
        await async_wait_until(lambda: len(server.log) == 2 and server.log[1].busy)
        drain = asyncio.create_task(server.drain_and_close())
        assert await r_idle.read() == b""  # an idle connection closes at once
        await asyncio.sleep(0)
        assert not drain.done()
        w_busy.write(b"done")
        assert await r_busy.read() == b"finished"  # its answer, then the close
        await asyncio.wait_for(drain, 5)
        for w in (w_idle, w_busy):
            w.close()

    run(main)


def test_drain_timeout_aborts(run):
    async def main() -> None:
        server = await start(drain_timeout=0.05)
        reader, writer = await connect(server)
        writer.write(b"busy")
        await async_wait_until(lambda: server.log and server.log[0].busy)
        await server.drain_and_close()
        assert await reader.read() == b""
        assert not server.connections
        writer.close()

    run(main)


def test_idle_connections_are_closed(run):
    async def main() -> None:
        server = await start(idle_timeout=0.1)
        reader, writer = await connect(server)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await server.drain_and_close()

    run(main)


def test_peer_reset_reports_the_error(run):
    async def main() -> None:
        server = await start()
        sock = socket.create_connection(("127.0.0.1", server.address[1]))
        sock.sendall(b"hi")
        await async_wait_until(lambda: server.log and len(server.log[0].events) > 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST
        conn = server.log[0]
        await async_wait_until(lambda: conn.events[-1][0] == "close")
        assert isinstance(conn.events[-1][1], ConnectionError)
        await server.drain_and_close()

    run(main)


def test_unix_socket(run):
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "s")
            listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listening.bind(path)
            listening.listen()
            server = DirectServer("u", ServerConfig(), Echo, sock=listening)
            server.log = []  # type: ignore[attr-defined]
            await server.start()
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"unix")
            assert await reader.readexactly(4) == b"unix"
            assert server.log[0].peer == ("", 0)  # an unnamed client socket
            writer.close()
            await server.drain_and_close()

    run(main)
