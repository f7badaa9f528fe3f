"""An asyncio RESP client: pipelining, timeouts, a small pool with reconnect.

On the request's journey this is how the appserver reaches kvcache and minidb, how the
gateways share token buckets through kvcache, and how tests talk to our stores:

    pool = RespPool("redis://127.0.0.1:6380/0", size=4)
    await pool.execute("SET", "stock:42", 7)
    async with pool.connection() as conn:          # exclusive: WATCH / MULTI / EXEC
        await conn.execute("WATCH", "stock:42")
        replies = await conn.pipeline([("MULTI",), ("DECRBY", "stock:42", 1), ("EXEC",)])

How a connection works: every `execute` queues its command and appends a future to a
FIFO; everything queued in one turn of the event loop goes out in one write, and the
reader completes futures in order as replies arrive. So concurrent callers on one
connection are pipelined for free — RESP guarantees replies in request order.

Failure rules, chosen so a caller never gets someone else's reply:
- a read timeout or a broken socket closes the connection and fails every waiting call
  (a late reply could otherwise be matched to the next request);
- the pool replaces closed connections. A pooled connection that sat idle may have been
  closed by the server (its idle timeout, a restart) without us having noticed yet; a
  command that fails that way is retried once on a fresh connection, as redis-py does.
  A command on a fresh connection is never retried: it may have run (think INCR).

Simpler than the real thing: no Sentinel/Cluster, no pub/sub, no client-side caching;
RESP3 push messages are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from minisys.pipelining import PipelinedProtocol
from minisys.resp.codec import RespParser
from minisys.resp.encoder import encode_command
from minisys.resp.reply_parser import INCOMPLETE
from minisys.resp.url import RedisURL, parse_redis_url
from minisys.resp.values import ProtocolError, Push, RespError

# Replies a client accepts; far above anything our stores send, far below RAM.
MAX_REPLY_BULK = 64 * 1024 * 1024
# Requests in flight on one connection before callers wait for replies to come back.
MAX_IN_FLIGHT = 10_000
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0

RespReplyError = RespError  # the name the plan used; an error reply raised by execute()


class RespConnectionError(ConnectionError):
    """The connection failed or was closed; the command's outcome is unknown."""


class RespTimeout(RespConnectionError, TimeoutError):
    """No reply within read_timeout (or no connection within connect_timeout)."""


class _ClientProtocol(PipelinedProtocol):
    """One socket: commands go out in batches, replies come back matched to waiters
    (`minisys/pipelining.py`; bench/appserver.py, CPU µs per request: on the appserver's
    cached GET kvcache 38 → 16 and the appserver 141 → 127; per order kvcache 187 → 96,
    the appserver 856 → 662). Reads land in the shared buffer of `minisys/reads.py`:
    sequential GETs cost the client 98 → 50-68 µs CPU each."""

    def __init__(self, read_timeout: float | None = None) -> None:
        super().__init__(read_timeout)
        self.parser = RespParser(max_bulk=MAX_REPLY_BULK)
        self.closed_exc: Exception | None = None
        self.can_write = asyncio.Event()  # cleared while the socket's buffer is full
        self.can_write.set()
        self.room = asyncio.Event()  # cleared while MAX_IN_FLIGHT requests await replies
        self.room.set()

    @property
    def down(self) -> bool:
        return self.closed_exc is not None

    def timeout_error(self) -> Exception:
        return RespTimeout(f"no reply within {self.read_timeout}s")

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.feed(data)
        waiters = self.waiters
        deadlines = self.deadlines
        while True:
            try:
                value = parser.next_reply()
            except ProtocolError as exc:
                self.fail(RespConnectionError(f"bad reply from server: {exc.message}"))
                return
            if value is INCOMPLETE:
                break
            if type(value) is Push:
                continue  # out-of-band RESP3 message; we subscribe to nothing
            if not waiters:
                self.fail(RespConnectionError("reply without a request"))
                return
            waiter = waiters.popleft()
            # reply_arrived() inlined: a call less per reply (we never send exempt ones).
            if deadlines and deadlines.popleft() == math.inf:
                self.exempt_replied()
            if not waiter.done():
                waiter.set_result(value)
        if not self.room.is_set() and len(waiters) < MAX_IN_FLIGHT // 2:
            self.room.set()  # once per read, not per reply

    def fail(self, exc: Exception) -> None:
        if self.closed_exc is None:
            self.closed_exc = exc
        self.clear(self.closed_exc)
        self.can_write.set()
        self.room.set()
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespConnectionError(f"connection closed: {exc or 'by the server'}"))

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()


class RespClient:
    """One connection to a RESP server."""

    def __init__(self, protocol: _ClientProtocol, read_timeout: float | None) -> None:
        self._protocol = protocol
        protocol.read_timeout = read_timeout

    @property
    def read_timeout(self) -> float | None:
        """Seconds a reply may take; then the connection is closed (None: wait forever)."""
        return self._protocol.read_timeout

    @read_timeout.setter
    def read_timeout(self, seconds: float | None) -> None:
        self._protocol.read_timeout = seconds

    @classmethod
    async def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        protocol: int = 2,
    ) -> RespClient:
        """Open a connection; AUTH / HELLO 3 / SELECT as asked. Raises RespConnectionError."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, proto = await loop.create_connection(_ClientProtocol, host, port)
        except TimeoutError:
            raise RespTimeout(f"connect to {host}:{port} timed out") from None
        except OSError as exc:
            raise RespConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        client = cls(proto, read_timeout)
        try:
            if protocol == 3:
                auth = ("AUTH", username or "default", password) if password is not None else ()
                await client.execute("HELLO", 3, *auth)
            elif password is not None:
                await client.execute("AUTH", *([username] if username else []), password)
            if db:
                await client.execute("SELECT", db)
        except BaseException:
            await client.close()
            raise
        return client

    @classmethod
    async def from_url(cls, url: str | RedisURL, **kwargs: object) -> RespClient:
        u = parse_redis_url(url) if isinstance(url, str) else url
        return await cls.connect(
            u.host, u.port, db=u.db, username=u.username, password=u.password, **kwargs
        )

    @property
    def closed(self) -> bool:
        return self._protocol.closed_exc is not None

    async def _wait_for_room(self) -> None:
        """Let replies come back (or the socket drain) before piling on more."""
        proto = self._protocol
        while proto.closed_exc is None and (
            len(proto.waiters) >= MAX_IN_FLIGHT or not proto.can_write.is_set()
        ):
            if len(proto.waiters) >= MAX_IN_FLIGHT:
                proto.room.clear()
                await proto.room.wait()
            else:
                await proto.can_write.wait()
        if proto.closed_exc is not None:
            raise proto.closed_exc

    async def execute(self, *args: bytes | str | int | float) -> object:
        """Send one command and return its reply; an error reply is raised as RespError."""
        proto = self._protocol
        if (
            proto.closed_exc is not None
            or not proto.can_write.is_set()
            or len(proto.waiters) >= MAX_IN_FLIGHT
        ):
            await self._wait_for_room()
        future = proto.send_one(encode_command(*args))
        try:
            reply = await future
        except asyncio.CancelledError:
            # The caller gave up: the connection no longer knows whose reply comes next.
            proto.fail(RespConnectionError("a waiting call was cancelled"))
            raise
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def pipeline(
        self,
        commands: Iterable[Sequence[bytes | str | int | float]],
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> list:
        """Send many commands in one write; return all replies (errors as RespError values).

        `on_sent` is called once the commands are queued for this connection's write (made
        at the next loop turn), before any reply (the order flow hands the next order of
        the same products its turn there: `appserver/keyed_locks.py`)."""
        cmds = list(commands)
        if not cmds:
            return []
        proto = self._protocol
        if (
            proto.closed_exc is not None
            or not proto.can_write.is_set()
            or len(proto.waiters) >= MAX_IN_FLIGHT
        ):
            await self._wait_for_room()
        futures = proto.send(b"".join([encode_command(*cmd) for cmd in cmds]), len(cmds))
        if on_sent is not None:
            on_sent()
        try:
            # Replies complete in request order, and a failure fails every waiter in
            # order too: once the last is done, all are. One await instead of one each.
            await futures[-1]
        except asyncio.CancelledError:
            proto.fail(RespConnectionError("a waiting call was cancelled"))
            raise
        return [f.result() for f in futures]

    def abort(self) -> None:
        """Drop the connection at once (no await needed)."""
        self._protocol.fail(RespConnectionError("client closed"))

    async def close(self) -> None:
        proto = self._protocol
        if proto.transport is not None and proto.closed_exc is None:
            proto.flush()  # commands queued this turn still go out, as if written at once
            proto.transport.close()
        proto.fail(RespConnectionError("client closed"))


class RespPool:
    """Up to `size` connections to one server, created lazily and replaced when broken."""

    def __init__(
        self,
        url_or_host: str = "127.0.0.1",
        port: int | None = None,
        *,
        size: int = 4,
        **connect_kwargs: object,
    ) -> None:
        if "://" in url_or_host:
            self.url = parse_redis_url(url_or_host)
        else:
            self.url = RedisURL(host=url_or_host, port=port or 6379)
        self.size = size
        self.connect_kwargs = connect_kwargs
        self._idle: list[RespClient] = []
        self._available = asyncio.Semaphore(size)
        self._closed = False

    async def _acquire(self, reuse: bool = True) -> RespClient:
        await self._available.acquire()
        while self._idle and reuse:
            client = self._idle.pop()
            if not client.closed:
                return client
        try:
            client = await RespClient.from_url(self.url, **self.connect_kwargs)
        except BaseException:
            self._available.release()
            raise
        return client

    def _release(self, client: RespClient) -> None:
        if client.closed or self._closed:
            if not client.closed:
                client.abort()
        else:
            self._idle.append(client)
        self._available.release()

    @contextlib.asynccontextmanager
    async def connection(self, *, fresh: bool = False) -> AsyncIterator[RespClient]:
        """Borrow one connection exclusively (for WATCH/MULTI/EXEC or a long pipeline)."""
        if self._closed:
            raise RespConnectionError("pool is closed")
        client = await self._acquire(reuse=not fresh)
        try:
            yield client
        finally:
            self._release(client)

    async def _run(self, method: str, *args: object) -> object:
        fresh = not self._idle
        try:
            async with self.connection() as client:
                return await getattr(client, method)(*args)
        except RespTimeout:
            raise
        except RespConnectionError:
            if fresh:
                raise
        async with self.connection(fresh=True) as client:
            return await getattr(client, method)(*args)

    async def execute(self, *args: bytes | str | int | float) -> object:
        """Run one command on some connection; RespError for error replies."""
        return await self._run("execute", *args)

    async def pipeline(self, commands: Iterable[Sequence[bytes | str | int | float]]) -> list:
        """Run commands as one pipeline on one connection; errors come back as values."""
        return await self._run("pipeline", list(commands))

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            await client.close()
