"""The shell around the RESP engine: bytes in, replies out, in order, fast.

On the request's journey this is where a kvcache or minidb connection lives. The kernel's
`DirectServer` (minisys/direct.py) accepts the socket and handles limits, idle timeouts
and draining; this class only moves bytes between the socket and the sans-I/O parts:

    socket readable ─▶ on_data ─▶ parser.feed ─▶ next_command ×N ─▶ engine.execute ×N
                    ─▶ encode ×N ─▶ ONE sock.send for the whole batch

Why one send per batch: redis-benchmark with `-P 16` (or any pipelining client) sends 16
commands in one TCP segment; answering them with one `send` is one syscall instead of 16,
which is most of the difference between ~100k and ~30k requests/s in Python.

Why a raw socket and not an asyncio Protocol: a transport's read travels selector →
Handle → `_run_once` → `_read_ready` → `get_buffer` → `recv_into` → `buffer_updated` →
`data_received`, and its write through the transport's state checks. On `DirectConnection`
the socket's read callback is called straight from epoll (on the loop of
`minisys.poller.ServingLoopPolicy`, which `python -m kvcache`/`minidb`/`minisys.resp`
install) and a reply is one `send`. Measured with callgrind (PYTHONHASHSEED=0, server
instructions per request, redis-benchmark -c 50): minidb SET under fsync=always 74.1k →
61.6k, kvcache SET/GET 42.9k → 31.9k. The same code runs on any asyncio loop, through
`loop.add_reader` (tests' plain `asyncio.run`). Streams would be slower still: a
coroutine switch and a buffer copy per read.

Handlers may return an awaitable (a SAVE waiting for its thread). Later commands of the
same pipeline still run at once — as in Redis with `appendfsync always`, where replies
wait for the fsync but execution does not — and their replies queue behind the awaited
one, so replies always leave in request order. Replies of the same read that came before
the awaited one wait with it, so a read's replies still leave in one send. At most
MAX_PENDING_REPLIES may wait; past that we stop reading from that client until the queue
shrinks. A client that does not read its replies stops its own pipeline: once more than
`WRITE_HIGH_WATER` bytes are unsent we execute nothing more of it until they are sent.

The queue is drained by callbacks, not by a Task: each awaited reply's future calls
`_reply_ready` when it finishes, which writes every finished reply at the head of the
queue. A Task with `await asyncio.shield(…)` per reply did the same with two more futures
and a coroutine step per reply; minidb's SET under fsync=always measured 72 → 42–50 µs of
server CPU per request without them. A client that leaves stops nothing: its queued
commands (say, a shared group commit) finish for everyone else.

Cheaper still for replies that many clients wait on together (minidb's fsync): `Held`
replies on a `ReplyGate` (gate.py), released for every waiting connection in one call.

Simpler than the real thing: Redis answers a protocol error and closes; so do we, but we
also drop any replies still waiting on an awaitable when the client goes away.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from minisys.direct import WRITE_HIGH_WATER, DirectConnection, DirectServer
from minisys.resp.codec import MAX_BULK, RespParser
from minisys.resp.encoder import BULK_HEADERS, SHORT_BULK, STATUS_REPLIES, encode_reply
from minisys.resp.engine import NO_REPLY, CommandTable, Engine, Session
from minisys.resp.gate import Held, ReplyGate
from minisys.resp.values import ProtocolError, RespError, SimpleString
from minisys.server import ServerConfig

__all__ = ["Held", "ReplyGate", "RespConnection", "RespServer", "resp_server"]

log = logging.getLogger("minisys.resp.server")

# Replies held behind an unfinished awaitable before we stop reading that client.
MAX_PENDING_REPLIES = 1024
# Reply bytes gathered from one read's pipeline before we hand them to the socket.
MAX_BATCH_BYTES = 256 * 1024

# Return types that are never awaitable: checking the class first skips a getattr.
_PLAIN = frozenset({bytes, int, SimpleString, type(None), list, RespError, dict, str})


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


class RespConnection(DirectConnection):
    """One client of a RESP server."""

    def __init__(self, engine: Engine, *, max_bulk: int = MAX_BULK) -> None:
        self.engine = engine
        self.parser = RespParser(max_bulk=max_bulk)
        self.session: Session | None = None
        # Replies (bytes, or (future or Held, proto)) waiting behind an unfinished one, in order.
        self._queue: collections.deque = collections.deque()
        self._gone = False  # the connection closed: finished futures are only retrieved
        self._stopped = False  # QUIT or a protocol error: parse nothing more
        self._queue_full = False  # we paused reading because the queue was full
        self._write_paused = False  # over WRITE_HIGH_WATER unsent: execute nothing more

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

    def on_data(self, data: bytes = b"") -> None:
        """Execute every complete command buffered (after `data`); send the replies at once.

        The socket's read calls this for each read; the resume paths call it without
        data to carry on with commands already buffered.
        """
        parser = self.parser
        if data:
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
                        # it cannot keep up, stop here until it has sent them.
                        self._emit(b"".join(out))
                        out = []
                        size = 0
                        if self._write_paused:
                            break
            else:
                if not queue:
                    self.busy = True  # set_busy(True) inlined: a call less per held reply
                if out:
                    # The replies before it wait with it and leave in the same send.
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
                        self._drain()  # passed already: send it (and what precedes it)
                else:
                    pending = asyncio.ensure_future(reply)  # a coroutine becomes a Task
                    queue.append((pending, session.proto))
                    pending.add_done_callback(self._reply_ready)
                if len(queue) >= MAX_PENDING_REPLIES:
                    self._queue_full = True
                    self.pause_reading()
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
            elif self._pending is None and not self._closing:
                # self.write(data) inlined, as mq does: one call less per read.
                try:
                    sent = self.sock.send(data)  # type: ignore[union-attr]
                except OSError:
                    self._send(data)  # would block, or an error: write() deals with both
                else:
                    if sent < len(data):
                        self._keep(data, sent)
            else:
                self._send(data)
        if self._stopped and not queue:
            self.close()

    def _emit(self, data: bytes) -> None:
        """Send now, unless replies are still waiting for an awaitable: then queue."""
        if self._queue:
            self._queue.append(data)
        else:
            self._send(data)

    def _send(self, data: bytes) -> None:
        """`write`, then stop executing this client's commands if too much is unsent."""
        self.write(data)
        if self._pending is not None and len(self._pending) > WRITE_HIGH_WATER:
            self._write_paused = True

    def _keep(self, data: bytes, sent: int) -> None:
        """The inlined send took only `sent` bytes: keep the rest, as `write` would."""
        self.keep_unsent(data, sent)
        if len(self._pending) > WRITE_HIGH_WATER:  # type: ignore[arg-type]
            self._write_paused = True

    def on_sent(self) -> None:
        # Everything kept unsent has gone: carry on with the commands that waited in the
        # parser meanwhile (no new read may ever come).
        if self._write_paused:
            self._write_paused = False
            if not self._queue_full:
                self.on_data()

    def _encode(self, reply: object, proto: int) -> bytes:
        try:
            return encode_reply(reply, proto)
        except (TypeError, ValueError):
            log.exception("cannot encode the reply of %s", self.session.last_command)
            return encode_reply(RespError("ERR internal error (see server log)"), proto)

    def _reply_ready(self, future: asyncio.Future) -> None:
        """An awaited reply finished: send every finished reply at the head of the queue."""
        if self._gone:
            _retrieve(future)
            return
        self._drain()

    def _drain(self) -> None:
        """Send every finished reply at the head of the queue (futures' and gates' call).

        They go out in one send, as Redis writes a loop turn's replies after its fsync:
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
            if self._queue_full and len(queue) < MAX_PENDING_REPLIES // 2:
                self._queue_full = False
                # (While too much is unsent, the socket still holds reading back.)
                self.resume_reading()
                if not (self._stopped or self._write_paused or self._closing):
                    if ready:
                        self._send(ready[0] if len(ready) == 1 else b"".join(ready))
                        ready = []  # before the replies of newer commands
                    self.on_data()  # commands that were buffered while we were full
                    if self._gone:
                        return
        if ready and not self._closing:
            data = ready[0] if len(ready) == 1 else b"".join(ready)
            if self._pending is None:
                # self.write(data) inlined, as in on_data: _drain runs once per reply of
                # an unpipelined client (minidb SET under fsync=always).
                try:
                    sent = self.sock.send(data)  # type: ignore[union-attr]
                except OSError:
                    self._send(data)
                else:
                    if sent < len(data):
                        self._keep(data, sent)
            else:
                self._send(data)
        if queue:
            return
        self.busy = False  # set_busy(False), inline: a call less per held reply
        if self.server.draining:
            self.on_drain()
        if self._stopped:
            self.close()


class RespServer(DirectServer):
    """A kernel server whose connections speak RESP to one Engine."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        engine: Engine,
        *,
        max_bulk: int = MAX_BULK,
        connection: type[RespConnection] = RespConnection,
    ) -> None:
        super().__init__(name, config, lambda: connection(engine, max_bulk=max_bulk))
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
