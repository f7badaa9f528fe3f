"""The RESP server's ReplyGate: replies of many clients held for one event, released together.

minidb holds every acknowledged write's reply on its gate until an fsync covers the write;
these tests pin down the server side of that contract with a tiny engine whose `HOLD`
command holds `+OK` on a gate the test releases by hand.
"""

from __future__ import annotations

import asyncio
import contextlib

from minisys.direct import DirectServer
from minisys.resp.engine import CommandTable, Engine
from minisys.resp.server import Held, ReplyGate, RespConnection
from minisys.resp.values import RespError, SimpleString
from minisys.server import ServerConfig
from minisys.testing import async_wait_until

CONFIG = ServerConfig(port=0, drain_timeout=2.0, idle_timeout=0)
READ_TIMEOUT = 5.0
OK = SimpleString("OK")


class Counter:
    def __init__(self) -> None:
        self.ticket = 0  # the last ticket HOLD used
        self.slow: asyncio.Future | None = None  # SLOW's reply, set by the test


def gated_engine(gate: ReplyGate, counter: Counter) -> Engine:
    table = CommandTable()

    @table.command("hold", arity=2)
    def hold(session, argv):
        counter.ticket += 1
        return Held(gate, counter.ticket, argv[1])

    @table.command("ping2", arity=1)
    def ping2(session, argv):
        return OK

    @table.command("slow", arity=1)
    def slow(session, argv):
        future = asyncio.get_running_loop().create_future()
        counter.slow = future
        return future

    return Engine(table)


class CountingSocket:
    """An accepted socket whose every send is recorded (the server sends on its hot path)."""

    def __init__(self, sock) -> None:
        self._sock = sock

    def send(self, data: bytes) -> int:
        sent = self._sock.send(data)
        CountingConnection.writes.append(bytes(data[:sent]))
        return sent

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class CountingConnection(RespConnection):
    writes: list[bytes] = []

    def start(self, server, sock, peer, poller) -> None:
        super().start(server, CountingSocket(sock), peer, poller)


@contextlib.asynccontextmanager
async def serving(engine: Engine):
    server = DirectServer("gate-test", CONFIG, lambda: CountingConnection(engine))
    await server.start()
    try:
        yield server
    finally:
        await server.drain_and_close()


async def read_exactly(reader: asyncio.StreamReader, data: bytes) -> None:
    got = await asyncio.wait_for(reader.readexactly(len(data)), READ_TIMEOUT)
    assert got == data


async def nothing_to_read(reader: asyncio.StreamReader) -> bool:
    try:
        await asyncio.wait_for(reader.read(1), 0.05)
    except TimeoutError:
        return True
    return False


def test_one_release_writes_every_waiting_clients_replies_in_order():
    gate, counter = ReplyGate(), Counter()

    async def main():
        async with serving(gated_engine(gate, counter)) as server:
            a_reader, a = await asyncio.open_connection(*server.address)
            b_reader, b = await asyncio.open_connection(*server.address)
            a.write(b"PING2\r\nHOLD a1\r\nPING2\r\nHOLD a2\r\n")  # tickets 1, 2
            await async_wait_until(lambda: counter.ticket == 2)
            b.write(b"HOLD b1\r\n")  # ticket 3
            await async_wait_until(lambda: counter.ticket == 3)
            assert await nothing_to_read(a_reader) and await nothing_to_read(b_reader)
            assert all(conn.busy for conn in server.connections)
            CountingConnection.writes.clear()
            gate.release(1)  # passes a1 only: a's replies up to a1 leave, in one write
            await read_exactly(a_reader, b"+OK\r\n$2\r\na1\r\n+OK\r\n")
            assert CountingConnection.writes == [b"+OK\r\n$2\r\na1\r\n+OK\r\n"]
            assert await nothing_to_read(b_reader)
            gate.release(3)  # the rest of both, one write each, within this call
            assert len(CountingConnection.writes) == 3
            await read_exactly(a_reader, b"$2\r\na2\r\n")
            await read_exactly(b_reader, b"$2\r\nb1\r\n")
            assert not any(conn.busy for conn in server.connections)
            a.write(b"PING2\r\n")
            await read_exactly(a_reader, b"+OK\r\n")
            a.close()
            b.close()

    asyncio.run(main())


def test_a_release_visits_only_clients_whose_first_held_reply_it_passed():
    gate, counter = ReplyGate(), Counter()

    async def main():
        async with serving(gated_engine(gate, counter)) as server:
            a_reader, a = await asyncio.open_connection(*server.address)
            b_reader, b = await asyncio.open_connection(*server.address)
            a.write(b"HOLD a\r\n")
            await async_wait_until(lambda: counter.ticket == 1)
            b.write(b"HOLD b\r\n")
            await async_wait_until(lambda: counter.ticket == 2)
            assert sorted(gate.waiting.values()) == [1, 2]
            gate.release(1)
            assert list(gate.waiting.values()) == [2]  # b was not visited
            await read_exactly(a_reader, b"$1\r\na\r\n")
            gate.release(2)
            assert gate.waiting == {}
            await read_exactly(b_reader, b"$1\r\nb\r\n")
            a.close()
            b.close()

    asyncio.run(main())


def test_a_failed_gate_answers_every_reply_it_still_holds_with_its_error():
    gate, counter = ReplyGate(), Counter()

    async def main():
        async with serving(gated_engine(gate, counter)) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"HOLD x\r\nHOLD y\r\nPING2\r\n")
            await async_wait_until(lambda: counter.ticket == 2)
            gate.release(1, RespError("ERR fsync failed"))
            await read_exactly(reader, b"$1\r\nx\r\n-ERR fsync failed\r\n+OK\r\n")
            writer.close()

    asyncio.run(main())


def test_held_replies_wait_behind_an_awaited_one_and_keep_their_order():
    gate, counter = ReplyGate(), Counter()

    async def main():
        async with serving(gated_engine(gate, counter)) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"SLOW\r\nHOLD h\r\nPING2\r\n")
            await async_wait_until(lambda: counter.ticket == 1)
            gate.release(1)  # h passed, but SLOW's reply comes first
            assert await nothing_to_read(reader)
            counter.slow.set_result(SimpleString("DONE"))
            await read_exactly(reader, b"+DONE\r\n$1\r\nh\r\n+OK\r\n")
            # The other way round: the awaited reply waits behind an unpassed held one.
            writer.write(b"HOLD i\r\nSLOW\r\n")
            await async_wait_until(lambda: counter.ticket == 2)
            await async_wait_until(lambda: not counter.slow.done())
            counter.slow.set_result(SimpleString("DONE"))
            assert await nothing_to_read(reader)
            gate.release(2)
            await read_exactly(reader, b"$1\r\ni\r\n+DONE\r\n")
            writer.close()

    asyncio.run(main())


def test_a_client_that_leaves_stops_no_one_else():
    gate, counter = ReplyGate(), Counter()

    async def main():
        async with serving(gated_engine(gate, counter)) as server:
            _, gone = await asyncio.open_connection(*server.address)
            reader, writer = await asyncio.open_connection(*server.address)
            gone.write(b"HOLD g\r\n")
            await async_wait_until(lambda: counter.ticket == 1)
            writer.write(b"HOLD s\r\n")
            await async_wait_until(lambda: counter.ticket == 2)
            gone.close()
            await async_wait_until(lambda: len(server.connections) == 1)
            gate.release(2)
            await read_exactly(reader, b"$1\r\ns\r\n")
            writer.close()

    asyncio.run(main())


def test_a_held_reply_can_be_awaited_outside_the_server():
    async def main():
        gate = ReplyGate()
        early, late = Held(gate, 1, "early"), Held(gate, 2, "late")
        waiting = asyncio.ensure_future(late)
        gate.release(1)
        assert early.done() and not late.done()
        assert await early == "early"
        await asyncio.sleep(0)
        assert not waiting.done()
        gate.release(2)
        assert await waiting == "late"
        failed = Held(gate, 3, "never")
        pending = asyncio.ensure_future(failed)
        await asyncio.sleep(0)
        gate.release(2, RespError("ERR disk gone"))
        assert await pending == RespError("ERR disk gone")

    asyncio.run(main())
