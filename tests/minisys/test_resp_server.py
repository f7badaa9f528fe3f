"""The RESP server shell over real loopback sockets (in-process, port 0).

Every socket test runs on the loop `python -m kvcache`/`minidb` install (epoll callbacks
called straight from minisys.poller's ServingSelector) and on a plain asyncio loop (the
LoopPoller fallback of minisys.direct).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minisys import poller
from minisys.direct import DirectServer
from minisys.resp import encode_command
from minisys.resp import server as resp_server_module
from minisys.resp.client import RespClient
from minisys.resp.engine import CommandTable, Engine
from minisys.resp.server import RespConnection, resp_server
from minisys.resp.values import RespError, SimpleString
from minisys.server import ServerConfig
from minisys.testing import async_wait_until

CONFIG = ServerConfig(port=0, drain_timeout=2.0, idle_timeout=0)
# Every socket read in these tests gives up after this long instead of hanging CI.
READ_TIMEOUT = 5.0


def make_engine(gate: asyncio.Event | None = None) -> Engine:
    table = CommandTable()
    store: dict[bytes, bytes] = {}

    @table.command("get", arity=2)
    def get(session, argv):
        return store.get(argv[1])

    @table.command("set", arity=3)
    def set_(session, argv):
        store[argv[1]] = argv[2]
        return SimpleString("OK")

    @table.command("slowset", arity=3)
    def slowset(session, argv):
        store[argv[1]] = argv[2]  # applied now; the reply waits for the "fsync"

        async def durable():
            await gate.wait()
            return SimpleString("OK")

        return durable()

    @table.command("bad", arity=1)
    def bad(session, argv):
        return object()  # a handler bug: not a reply value

    @table.command("slowfail", arity=1)
    def slowfail(session, argv):
        async def fail():
            await gate.wait()
            raise RespError("ERR disk on fire")

        return fail()

    @table.command("slowcrash", arity=1)
    def slowcrash(session, argv):
        async def crash():
            await gate.wait()
            raise ValueError("a handler bug after an await")

        return crash()

    @table.command("cancelled", arity=1)
    def cancelled(session, argv):
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        return future

    return Engine(table, state=store)


@contextlib.asynccontextmanager
async def serving(engine: Engine, connection_class=RespConnection, config=CONFIG):
    server = DirectServer("resp-test", config, lambda: connection_class(engine))
    await server.start()
    try:
        yield server
    finally:
        await server.drain_and_close()


async def read_exactly(reader: asyncio.StreamReader, data: bytes) -> None:
    got = await asyncio.wait_for(reader.readexactly(len(data)), READ_TIMEOUT)
    assert got == data


LOOPS = {"serving-selector": lambda: poller.new_event_loop(serving=True), "plain-loop": None}
loop_factory = None  # the loop the current test runs on (set by the fixture below)


@pytest.fixture(autouse=True, params=list(LOOPS))
def each_loop(request):
    global loop_factory
    loop_factory = LOOPS[request.param]
    yield
    loop_factory = None


def run(coro):
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(asyncio.wait_for(coro, 20))


class CountingSocket:
    """An accepted socket whose every send is recorded (the server sends on its hot path)."""

    def __init__(self, sock, writes: list[bytes]) -> None:
        self._sock = sock
        self._writes = writes

    def send(self, data: bytes) -> int:
        sent = self._sock.send(data)
        self._writes.append(bytes(data[:sent]))
        return sent

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def counting_connection(writes: list[bytes]) -> type[RespConnection]:
    """A RespConnection whose every send to the socket is recorded in `writes`."""

    class Counting(RespConnection):
        def start(self, server, sock, peer, poller) -> None:
            super().start(server, CountingSocket(sock, writes), peer, poller)

    return Counting


def test_pipeline_is_answered_in_order_with_one_write():
    writes: list[bytes] = []
    Counting = counting_connection(writes)

    async def main():
        async with serving(make_engine(), Counting) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"SET k v\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*1\r\n$3\r\nFOO\r\n")
            expected = (
                b"+OK\r\n$1\r\nv\r\n+PONG\r\n"
                b"-ERR unknown command 'FOO', with args beginning with: \r\n"
            )
            await read_exactly(reader, expected)
            writer.close()

    run(main())
    assert writes == [
        b"+OK\r\n$1\r\nv\r\n+PONG\r\n-ERR unknown command 'FOO', with args beginning with: \r\n"
    ]


def test_protocol_error_is_answered_then_connection_closed():
    async def main():
        async with serving(make_engine()) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"PING\r\n*1\r\n+PING\r\nPING\r\n")
            data = await asyncio.wait_for(reader.read(), READ_TIMEOUT)
            assert data == b"+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n"
            writer.close()

    run(main())


def test_quit_replies_ok_then_closes():
    async def main():
        async with serving(make_engine()) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"QUIT\r\nPING\r\n")
            assert await asyncio.wait_for(reader.read(), READ_TIMEOUT) == b"+OK\r\n"
            writer.close()

    run(main())


def test_awaitable_replies_keep_order_and_later_commands_still_run():
    async def main():
        gate = asyncio.Event()
        engine = make_engine(gate)
        async with serving(engine) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"SLOWSET a 1\r\nGET a\r\nSLOWFAIL\r\nPING\r\n")
            # GET ran already (it sees the value), but its reply waits behind SLOWSET's.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.05)
            assert engine.state[b"a"] == b"1"
            (conn,) = server.connections
            assert conn.busy  # a drain would wait for these replies
            gate.set()
            await read_exactly(reader, b"+OK\r\n$1\r\n1\r\n-ERR disk on fire\r\n+PONG\r\n")
            writer.write(b"PING\r\n")
            await read_exactly(reader, b"+PONG\r\n")
            assert not conn.busy
            writer.close()

    run(main())


def test_replies_before_an_awaited_one_leave_with_it_in_one_write():
    # As Redis writes a loop turn's replies after its fsync: MULTI/QUEUED-style replies
    # read together with an awaited one wait for it, then all go in one send.
    writes: list[bytes] = []

    async def main():
        gate = asyncio.Event()
        async with serving(make_engine(gate), counting_connection(writes)) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"SET x 1\r\nPING\r\nSLOWSET a 1\r\nGET a\r\n")
            await async_wait_until(lambda: any(len(c._queue) == 3 for c in server.connections))
            assert writes == []  # +OK and +PONG wait with SLOWSET's reply
            gate.set()
            await read_exactly(reader, b"+OK\r\n+PONG\r\n+OK\r\n$1\r\n1\r\n")
            writer.close()

    run(main())
    assert writes == [b"+OK\r\n+PONG\r\n+OK\r\n$1\r\n1\r\n"]


def test_an_awaited_command_that_crashes_or_is_cancelled_gets_an_error_in_its_place():
    async def main():
        gate = asyncio.Event()
        async with serving(make_engine(gate)) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"SLOWCRASH\r\nCANCELLED\r\nPING\r\n")
            gate.set()
            await read_exactly(
                reader,
                b"-ERR internal error (see server log)\r\n-ERR command cancelled\r\n+PONG\r\n",
            )
            writer.close()

    run(main())


def test_pending_replies_are_bounded(monkeypatch):
    monkeypatch.setattr(resp_server_module, "MAX_PENDING_REPLIES", 4)

    async def main():
        gate = asyncio.Event()
        async with serving(make_engine(gate)) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"SLOWSET a 1\r\n" * 10)
            await async_wait_until(lambda: any(len(c._queue) == 4 for c in server.connections))
            (conn,) = server.connections
            assert conn.parser.buffered > 0  # the rest waits unparsed
            assert len(conn._queue) == 4
            gate.set()
            await read_exactly(reader, b"+OK\r\n" * 10)
            writer.close()

    run(main())


def test_connection_limit_refuses_like_redis():
    async def main():
        config = ServerConfig(port=0, max_connections=1, idle_timeout=0, drain_timeout=1)
        async with serving(make_engine(), config=config) as server:
            r1, w1 = await asyncio.open_connection(*server.address)
            w1.write(b"PING\r\n")
            await read_exactly(r1, b"+PONG\r\n")
            r2, w2 = await asyncio.open_connection(*server.address)
            data = await asyncio.wait_for(r2.read(), READ_TIMEOUT)
            assert data == b"-ERR max number of clients reached\r\n"
            w1.close()
            w2.close()

    run(main())


def test_resp3_after_hello_and_sessions_are_cleaned_up():
    async def main():
        engine = make_engine()
        async with serving(engine) as server:
            client = await RespClient.connect(*server.address, protocol=3)
            assert await client.execute("GET", "missing") is None
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"HELLO 3\r\nGET missing\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"*0\r\n"), READ_TIMEOUT)
            assert head.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
            await read_exactly(reader, b"_\r\n")
            assert len(engine.sessions) == 2
            writer.close()
            await client.close()
            await async_wait_until(lambda: not engine.sessions)

    run(main())


def test_big_value_round_trip_in_pieces():
    async def main():
        async with serving(make_engine()) as server:
            client = await RespClient.connect(*server.address)
            value = bytes(range(256)) * 4096  # 1 MiB, every byte value
            assert await client.execute("SET", "big", value) == "OK"
            assert await client.execute("GET", "big") == value
            await client.close()

    run(main())


def test_resp_server_helper_reports_port_in_info():
    async def main():
        table = CommandTable()
        server = resp_server("demo", CONFIG, table)
        await server.start()
        try:
            client = await RespClient.connect(*server.address)
            info = await client.execute("INFO", "server")
            assert f"tcp_port:{server.address[1]}".encode() in info
            await client.close()
        finally:
            await server.drain_and_close()

    run(main())


def test_unencodable_reply_becomes_an_error_and_the_connection_lives():
    async def main():
        async with serving(make_engine()) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"BAD\r\nPING\r\n")
            await read_exactly(reader, b"-ERR internal error (see server log)\r\n+PONG\r\n")
            writer.close()

    run(main())


def test_a_client_that_does_not_read_stops_its_pipeline():
    async def main():
        engine = make_engine()
        engine.state[b"big"] = b"x" * 256 * 1024
        reply = b"$262144\r\n" + engine.state[b"big"] + b"\r\n"
        count = 200  # 50 MiB of replies for 2 KiB of requests
        async with serving(engine) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"GET big\r\n" * count)
            await async_wait_until(lambda: any(c._write_paused for c in server.connections))
            (conn,) = server.connections
            assert conn.parser.buffered > 0  # the rest of the pipeline waits, unexecuted
            for _ in range(count):
                await read_exactly(reader, reply)
            writer.write(b"PING\r\n")
            await read_exactly(reader, b"+PONG\r\n")
            writer.close()

    run(main())


class FakeSocket:
    """Records what the connection sends (the kernel takes every byte); no real socket."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def send(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def fileno(self) -> int:
        return 99

    def close(self) -> None:
        self.closed = True


class FakePoller:
    def add_reader(self, fd, callback) -> None:
        pass

    def remove_reader(self, fd) -> None:
        pass


class FakeServer:
    draining = False
    loop = type("FakeLoop", (), {"call_soon": lambda self, *args: None})()


def fed_in_pieces(pieces: list[bytes]) -> tuple[bytes, bool]:
    conn = RespConnection(make_engine())
    sock = FakeSocket()
    conn.start(FakeServer(), sock, ("127.0.0.1", 1), FakePoller())
    for piece in pieces:
        if sock.closed:
            break
        conn.on_data(piece)
    return bytes(sock.written), sock.closed


requests = st.lists(
    st.one_of(
        st.lists(st.sampled_from([b"SET", b"GET", b"PING", b"ECHO", b"x", b"k"]), min_size=1).map(
            lambda args: encode_command(*args)
        ),
        st.sampled_from(
            [
                b"PING\r\n",
                b'SET k "a b"\n',
                b"\r\n",
                b"*0\r\n",
                b"HELLO 3\r\n",
                b"HELLO 2\r\n",
                b"GET k\r\n",
                b"*1\r\n$3\r\nFOO\r\n",
            ]
        ),
        st.binary(max_size=6),  # occasional garbage: a protocol error and a close
    ),
    max_size=12,
)


@settings(max_examples=100)
@given(requests, st.lists(st.integers(0, 10**6), max_size=10))
def test_replies_do_not_depend_on_how_the_bytes_were_split(parts, cuts):
    data = b"".join(parts)
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(edges)]
    assert fed_in_pieces(pieces) == fed_in_pieces([data])


def test_a_client_leaving_does_not_cancel_a_shared_awaitable():
    async def main():
        shared = asyncio.get_running_loop().create_future()  # e.g. one fsync for many
        table = CommandTable()

        @table.command("durable", arity=1)
        def durable(session, argv):
            return shared

        @table.command("cancelled", arity=1)
        def cancelled(session, argv):
            future = asyncio.get_running_loop().create_future()
            future.cancel()
            return future

        engine = Engine(table)
        async with serving(engine) as server:
            _, w1 = await asyncio.open_connection(*server.address)
            r2, w2 = await asyncio.open_connection(*server.address)
            w1.write(b"DURABLE\r\n")
            w2.write(b"CANCELLED\r\nDURABLE\r\n")
            await read_exactly(r2, b"-ERR command cancelled\r\n")
            w1.close()  # the first client leaves while its reply is pending
            await async_wait_until(lambda: len(server.connections) == 1)
            assert not shared.cancelled()
            shared.set_result(SimpleString("OK"))
            await read_exactly(r2, b"+OK\r\n")
            w2.close()

    run(main())
