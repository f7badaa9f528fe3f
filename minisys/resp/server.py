"""The asyncio shell around the RESP engine: bytes in, replies out, in order, fast.

On the request's journey this is where a kvcache or minidb connection lives. The kernel's
`Connection` (minisys/server.py) accepts the socket and handles limits, idle timeouts and
draining; this class only moves bytes between the socket and the sans-I/O parts:

    data_received ─▶ parser.feed ─▶ next_command ×N ─▶ engine.execute ×N ─▶ encode ×N
                  ─▶ ONE transport.write for the whole batch

Why one write per batch: redis-benchmark with `-P 16` (or any pipelining client) sends 16
commands in one TCP segment; answering them with one `write` is one syscall instead of 16,
which is most of the difference between ~100k and ~30k requests/s in Python.

Why a Protocol and not asyncio streams: streams add a coroutine switch and a buffer copy
per read; measured on this machine the same GET/SET logic ran about twice as fast on a
bare Protocol (see DESIGN.md).

Handlers may return an awaitable (minidb waiting for its fsync). Later commands of the
same pipeline still run at once — as in Redis with `appendfsync always`, where replies
wait for the fsync but execution does not — and their replies queue behind the awaited
one, so replies always leave in request order. Replies of the same read that came before
the awaited one wait with it, so a read's replies still leave in one write. At most
MAX_PENDING_REPLIES may wait; past that we stop reading from that client until the queue
shrinks.

The queue is drained by callbacks, not by a Task: each awaited reply's future calls
`_reply_ready` when it finishes, which writes every finished reply at the head of the
queue. A Task with `await asyncio.shield(…)` per reply did the same with two more futures
and a coroutine step per reply; minidb's SET under fsync=always measured 72 → 42–50 µs of
server CPU per request without them. A client that leaves stops nothing: its queued
commands (say, minidb's shared group commit) finish for everyone else.

Cheaper still for replies that many clients wait on together: a `ReplyGate`. The handler
returns `Held(gate, ticket, reply)` (minidb: the write's lsn and +OK), the connection
queues it and tells the gate it is waiting; when the layer calls `gate.release(n)` (an
fsync covered every lsn up to n) the gate drains each waiting connection once, in the
same call: no future, no `call_soon`, no extra loop turn per reply — Redis's
`beforeSleep`, which writes every client's pending replies after its fsync.

Simpler than the real thing: Redis answers a protocol error and closes; so do we, but we
also drop any replies still waiting on an awaitable when the client goes away.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from minisys.resp.codec import MAX_BULK, RespParser
from minisys.resp.encoder import BULK_HEADERS, SHORT_BULK, STATUS_REPLIES, encode_reply
from minisys.resp.engine import NO_REPLY, CommandTable, Engine, Session
from minisys.resp.values import ProtocolError, RespError, SimpleString
from minisys.server import Connection, Server, ServerConfig

log = logging.getLogger("minisys.resp.server")

# Replies held behind an unfinished awaitable before we stop reading that client.
MAX_PENDING_REPLIES = 1024
# Reply bytes gathered from one read's pipeline before we hand them to the socket.
MAX_BATCH_BYTES = 256 * 1024

# Return types that are never awaitable: checking the class first skips a getattr.
_PLAIN = frozenset({bytes, int, SimpleString, type(None), list, RespError, dict, str})


class Held:
    """A reply the server holds back until its gate passes `ticket` (see `ReplyGate`)."""

    __slots__ = ("gate", "ticket", "value")

    def __init__(self, gate: ReplyGate, ticket: int, value: object) -> None:
        self.gate = gate
        self.ticket = ticket
        self.value = value

    def done(self) -> bool:
        return self.ticket <= self.gate.passed or self.gate.error is not None

    def outcome(self) -> object:
        """The reply to send: the value once passed, the gate's error if it failed first."""
        if self.ticket <= self.gate.passed:
            return self.value
        return self.gate.error

    def __await__(self):  # for code outside the server (EXEC's gather, tests)
        return self.gate.wait(self).__await__()


class ReplyGate:
    """Replies of many connections held until one event releases them all (group commit).

    `release(n)` passes every ticket up to n and drains once each waiting connection
    whose first held ticket it passed; `release(n, error)` also answers every held reply
    past n with `error`. A connection registers (with the ticket of its first held reply)
    when it queues a Held reply, and again whenever a drain stops at one that has not
    passed, so every connection whose queue has one at its head is registered. After an
    error the gate stays failed.

    Why the ticket: with the fsync in a thread, writes that arrive during fsync k wait
    for k+1, and releasing k must not visit them (a wasted drain each: 75k drains for
    50k SETs under redis-benchmark -c 50 before, 50k after).
    """

    def __init__(self) -> None:
        self.passed = 0
        self.error: RespError | None = None
        self.waiting: dict[RespConnection, int] = {}  # -> its first held reply's ticket
        self._futures: list[tuple[Held, asyncio.Future]] = []

    def release(self, ticket: int, error: RespError | None = None) -> None:
        """Pass every ticket up to `ticket`, and with `error` fail every one after it."""
        if ticket > self.passed:
            self.passed = ticket
        if error is not None:
            self.error = error
        self._drain_all()

    def wait(self, held: Held) -> asyncio.Future:
        """A future of `held`'s reply, for whoever awaits it instead of the server."""
        future = asyncio.get_running_loop().create_future()
        if held.done():
            future.set_result(held.outcome())
        else:
            self._futures.append((held, future))
        return future

    def _drain_all(self) -> None:
        waiting = self.waiting
        if self.error is None:
            passed = self.passed
            ready = [conn for conn, ticket in waiting.items() if ticket <= passed]
        else:
            ready = list(waiting)
        for conn in ready:
            del waiting[conn]
            conn._drain()
        if self._futures:
            futures, self._futures = self._futures, []
            for held, future in futures:
                if not held.done():
                    self._futures.append((held, future))
                elif not future.done():
                    future.set_result(held.outcome())


def _retrieve(future: asyncio.Future) -> None:
    """Mark a reply's outcome as seen even if its client left before we could send it."""
    if not future.cancelled():
        future.exception()


def _outcome(future: asyncio.Future, command: str | None) -> object:
    """The reply an awaited command's finished future stands for."""
    if future.cancelled():
        return RespError("ERR command cancelled")
    exc = future.exception()
    if exc is None:
        return future.result()
    if isinstance(exc, RespError):
        return exc
    log.error("command %s failed", command, exc_info=exc)
    return RespError("ERR internal error (see server log)")


class RespConnection(Connection):
    """One client of a RESP server."""

    def __init__(self, engine: Engine, *, max_bulk: int = MAX_BULK) -> None:
        self.engine = engine
        self.parser = RespParser(max_bulk=max_bulk)
        self.session: Session | None = None
        # Replies (bytes, or (future or Held, proto)) waiting behind an unfinished one, in order.
        self._queue: collections.deque = collections.deque()
        self._gone = False  # the connection closed: finished futures are only retrieved
        self._stopped = False  # QUIT or a protocol error: parse nothing more
        self._paused = False  # we paused reading because the queue was full
        self._write_paused = False  # the socket's send buffer is over its high-water mark

    def on_connect(self) -> None:
        self.session = self.engine.open_session(self.peer)
        self.parser.authenticated = self.session.authenticated

    def refusal(self) -> bytes:
        return b"-ERR max number of clients reached\r\n"

    def on_close(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.engine.close_session(self.session)
        # Queued commands carry on (their futures retrieve themselves in _reply_ready);
        # their replies have nowhere to go.
        self._gone = True
        self._queue.clear()

    def on_data(self, data: bytes) -> None:
        self.data_received(data)

    def data_received(self, data: bytes = b"") -> None:
        """Execute every complete command buffered (after `data`); write the replies at once.

        The transport calls this for each read; the pause/resume paths call it without
        data to carry on with commands already buffered. It also counts the read for the
        idle timeout, as the kernel's data_received would. One method for both, rather than
        data_received calling a loop method, saves a call per read (one per request without
        pipelining): ~330 of ~25,800 instructions per GET read under callgrind.
        """
        parser = self.parser
        if data:
            self._activity += 1
            parser.feed(data)
        session = self.session
        execute = self.engine.execute
        queue = self._queue
        if self._stopped or self._write_paused or len(queue) >= MAX_PENDING_REPLIES:
            return
        authenticated = parser.authenticated
        out: list[bytes] = []
        size = 0
        while True:
            try:
                argv = parser.next_command()
            except ProtocolError as exc:
                if exc.reply:
                    out.append(b"-ERR %b\r\n" % exc.message.encode("utf-8", "replace"))
                self._stopped = True
                break
            if argv is None:
                break
            reply = execute(session, argv)
            cls = reply.__class__
            if cls in _PLAIN or not hasattr(reply, "__await__"):
                if reply is not NO_REPLY:
                    # The two commonest replies (a GET's short value, +OK) are encoded
                    # here as encode_reply would, without its call: callgrind, kvcache,
                    # ~400 of ~20,600 (SET) and ~390 of ~16,100 (GET) instructions per
                    # command with 16 pipelined per read; as many without pipelining.
                    if cls is bytes and len(reply) < SHORT_BULK:
                        data = b"".join((BULK_HEADERS[len(reply)], reply, b"\r\n"))
                    elif cls is SimpleString and reply in STATUS_REPLIES:
                        data = STATUS_REPLIES[reply]
                    else:
                        try:
                            data = encode_reply(reply, session.proto)
                        except (TypeError, ValueError):
                            data = self._encode(reply, session.proto)
                    out.append(data)
                    size += len(data)
                    if size > MAX_BATCH_BYTES:
                        # A pipeline of big GETs: hand the socket what we have so far; if
                        # it cannot keep up, pause_writing stops this loop.
                        self._emit(b"".join(out))
                        out = []
                        size = 0
                        if self._write_paused:
                            break
            else:
                if not queue:
                    self.busy = True  # set_busy(True) inlined: a call less per held reply
                if out:
                    # The replies before it wait with it and leave in the same write.
                    queue.append(b"".join(out))
                    out = []
                    size = 0
                if cls is Held:
                    queue.append((reply, session.proto))
                    gate = reply.gate
                    if reply.ticket > gate.passed and gate.error is None:
                        if self not in gate.waiting:  # else an earlier reply's ticket is there
                            gate.waiting[self] = reply.ticket  # its release will drain us
                    else:
                        self._drain()  # passed already: write it (and what precedes it)
                else:
                    pending = asyncio.ensure_future(reply)  # a coroutine becomes a Task
                    queue.append((pending, session.proto))
                    pending.add_done_callback(self._reply_ready)
                if len(queue) >= MAX_PENDING_REPLIES:
                    self._paused = True
                    self.transport.pause_reading()
                    break
            if session.closing:
                self._stopped = True
                break
            if not authenticated and session.authenticated:  # AUTH lifts the small limits
                parser.authenticated = authenticated = True
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            if queue:
                queue.append(data)
            elif not self._closing:
                # Connection.write inlined (we only run once connected): a call less per read.
                self.transport.write(data)
        if self._stopped and not queue:
            self.close()

    def _emit(self, data: bytes) -> None:
        """Write now, unless replies are still waiting for an awaitable: then queue."""
        if self._queue:
            self._queue.append(data)
        else:
            self.write(data)

    def _encode(self, reply: object, proto: int) -> bytes:
        try:
            return encode_reply(reply, proto)
        except (TypeError, ValueError):
            log.exception("cannot encode the reply of %s", self.session.last_command)
            return encode_reply(RespError("ERR internal error (see server log)"), proto)

    def _reply_ready(self, future: asyncio.Future) -> None:
        """An awaited reply finished: write every finished reply at the head of the queue."""
        if self._gone:
            _retrieve(future)
            return
        self._drain()

    def _drain(self) -> None:
        """Write every finished reply at the head of the queue (futures' and gates' call).

        They go out in one write, as Redis writes a loop turn's replies after its fsync:
        a MULTI … EXEC pipeline to minidb is one send (and one read for the client)
        instead of one for +OK/+QUEUED and another for EXEC's reply.
        """
        if self._gone:
            return
        queue = self._queue
        ready: list[bytes] = []
        while queue:
            item = queue[0]
            if item.__class__ is bytes:
                data = item
            elif (pending := item[0]).__class__ is Held:
                gate = pending.gate
                if pending.ticket <= gate.passed:
                    value = pending.value
                elif gate.error is not None:
                    value = gate.error
                else:
                    gate.waiting[self] = pending.ticket  # that release carries on
                    break
                if value.__class__ is SimpleString and value in STATUS_REPLIES:
                    data = STATUS_REPLIES[value]  # +OK: encode_reply's work, without its call
                else:
                    data = b"" if value is NO_REPLY else self._encode(value, item[1])
            else:
                pending, proto = item
                if not pending.done():
                    break  # its own callback carries on from there
                value = _outcome(pending, self.session.last_command)
                data = b"" if value is NO_REPLY else self._encode(value, proto)
            queue.popleft()
            if data:
                ready.append(data)
            if self._paused and len(queue) < MAX_PENDING_REPLIES // 2:
                self._paused = False
                # If the socket is also full, resume_writing will carry on instead.
                if not (self._stopped or self._write_paused) and self.transport:
                    self._write_all(ready)  # before the replies of newer commands
                    ready = []
                    self.transport.resume_reading()
                    self.data_received()  # commands that were buffered while we were full
                    if self._gone:
                        return
        if ready and not self._closing:
            # Connection.write inlined, as in data_received: _drain runs once per reply
            # of an unpipelined client (minidb SET under fsync=always), two calls less.
            self.transport.write(ready[0] if len(ready) == 1 else b"".join(ready))
        if queue:
            return
        self.set_busy(False)
        if self._stopped:
            self.close()

    def _write_all(self, replies: list[bytes]) -> None:
        if replies:
            self.write(replies[0] if len(replies) == 1 else b"".join(replies))

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop executing its pipeline (the base
        # also stops reading from it) until the socket drains.
        self._write_paused = True
        super().pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        # Stay paused while the reply queue is full, or its bound would mean nothing.
        if not self._paused:
            super().resume_writing()
            self.data_received()  # commands already buffered when we paused


class RespServer(Server):
    """A kernel Server whose connections speak RESP to one Engine."""

    def __init__(
        self, name: str, config: ServerConfig, engine: Engine, *, max_bulk: int = MAX_BULK
    ) -> None:
        super().__init__(name, config, lambda: RespConnection(engine, max_bulk=max_bulk))
        self.engine = engine

    async def start(self) -> None:
        await super().start()
        self.engine.tcp_port = self.address[1]


def resp_server(
    name: str,
    config: ServerConfig,
    engine: Engine | CommandTable,
    *,
    max_bulk: int = MAX_BULK,
) -> RespServer:
    """A RESP server for `engine` (or a bare command table, wrapped in a new Engine)."""
    if isinstance(engine, CommandTable):
        engine = Engine(engine, component=name)
    return RespServer(name, config, engine, max_bulk=max_bulk)
