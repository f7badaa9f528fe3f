"""A pooled keep-alive HTTP/1.1 client (asyncio), for the gateway's proxy, health checks,
the load generator's helpers and tests.

On the request's journey this is how the gateway reaches an appserver: it borrows a
connection to that origin from a small pool, writes one request, reads the response whole
with the sans-I/O `ResponseParser`, and gives the connection back - but only if the
response was read to its end and both sides said keep-alive. A connection whose response
was cut short, or that carried `Connection: close`, is closed, never reused: reusing it
would hand the next request the previous response's leftovers.

    pool per origin (host, port):
        idle connections (LIFO, so warm ones are reused first)
        a semaphore bounding connections open at once (pool_size_per_origin)

A reused idle connection may have been closed by the server in the meantime (its
keep-alive timeout passed). If it fails before any response byte arrives, the request is
retried once on a fresh connection when that is safe (idempotent methods), which is what
browsers and urllib3 do.

Errors are `ClientError`s carrying the status a gateway should answer with: connect
failure 502, timeout 504, broken response 502, and `request_sent` to tell whether the
upstream may have seen the request (only then is a retry of a POST unsafe).

Simpler than the real thing: no TLS, no proxies, no redirects, no cookies, no streaming of
response bodies (each is read whole, bounded by `Limits.max_body`), and no pipelining.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from minisys.http.client_now import Exchange, RawExchange, RawTaker, Slots, timed_out
from minisys.http.client_result import (
    CLIENT_LIMITS,
    IDEMPOTENT,
    BadResponse,
    ClientError,
    ClientResponse,
    ClientTimeout,
    ConnectError,
)
from minisys.http.codec import ResponseParser
from minisys.http.head import Headers, HttpError, Limits
from minisys.http.serialize import serialize_request
from minisys.reads import BufferedReads


class _Deadlines:
    """The read deadlines of one client's requests in flight, enforced by one timer.

    A timer per request (`loop.call_at`, cancelled when the response arrives) costs a
    TimerHandle and a heap push and pop for every request. Instead each connection in
    flight notes its deadline here, and a single timer is armed at the earliest one. As
    every request of a client usually has the same timeout, a new deadline is later than
    the armed one and arms nothing: the timer fires about once per timeout period, looks
    at the connections still in flight, fails the overdue ones with TimeoutError and
    re-arms at the earliest deadline left. Deadlines stay exact (to the loop's clock).
    """

    def __init__(self) -> None:
        self.pending: set[_Connection] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the timer is on

    def add(self, conn: _Connection, deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        conn.deadline = deadline
        self.pending.add(conn)
        if self._timer is None or deadline < self._armed_at or loop is not self._loop:
            if self._timer is not None:
                self._timer.cancel()
            self._armed_at = deadline
            self._loop = loop
            self._timer = loop.call_at(deadline, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        earliest = None
        for conn in list(self.pending):
            if conn.deadline <= now:
                conn.expire()  # fails its waiter and leaves `pending`
            elif earliest is None or conn.deadline < earliest:
                earliest = conn.deadline
        if earliest is not None:
            self._armed_at = earliest
            self._timer = loop.call_at(earliest, self._expire, loop)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Connection(BufferedReads):
    """One upstream connection; at most one request in flight (reads: minisys/reads.py)."""

    def __init__(self, limits: Limits, deadlines: _Deadlines) -> None:
        self.parser = ResponseParser(limits)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        # Instead of a waiter, the fast path's callback: then(response, None) or (None, exc).
        self.then: Callable[[ClientResponse | None, Exception | None], None] | None = None
        # The raw fast path's exchange: offered the response's first bytes (client_now.py).
        self.raw: RawExchange | None = None
        self.closed = False
        self.got_bytes = False
        self.deadline = 0.0
        self._deadlines = deadlines

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._loop = asyncio.get_running_loop()

    def send(self, method: str, data: bytes, deadline: float) -> asyncio.Future:
        """Write one request; the future gets its response, or TimeoutError at `deadline`."""
        assert self.transport is not None
        self.waiter = waiter = self._loop.create_future()
        self._deadlines.add(self, deadline, self._loop)
        self.got_bytes = False
        self.parser.expect_response(method)
        self.transport.write(data)
        return waiter

    def send_now(
        self, method: str, data: bytes, deadline: float, then: Callable, raw: Any = None
    ) -> None:
        """Like `send`, but the response (or error) goes to the callback `then` (and its
        first bytes to `raw.offer` first, when given)."""
        assert self.transport is not None
        self.then = then
        self._deadlines.add(self, deadline, self._loop)
        self.got_bytes = False
        if raw is None:
            self.parser.expect_response(method)
        else:
            self.raw = raw
        self.transport.write(data)

    def expire(self) -> None:
        """The deadline passed before the response was complete."""
        self._fail(TimeoutError())

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        raw = self.raw
        if raw is not None:
            self.raw = None
            if raw.offer(data):
                return
            self.parser.expect_response(raw.method)  # not taken: parse it as usual
        self.parser.feed(data)
        self._pump()

    def eof_received(self) -> bool | None:
        self.parser.feed_eof()
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        self._settle()
        self.raw = None
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        then = self.then
        if then is not None:
            self.then = None
            then(None, exc)

    def _settle(self) -> None:
        """The request is over (answered or failed): its deadline no longer applies."""
        self._deadlines.pending.discard(self)

    def _pump(self) -> None:
        parser = self.parser
        while True:
            try:
                message = parser.next_response()
            except HttpError as err:
                self._fail(BadResponse(err.reason, request_sent=True))
                self.close()
                return
            if message is None:
                if parser.closed:
                    self.close()
                    self._fail(ConnectionResetError("connection closed by the server"))
                return
            head, body = message
            response = ClientResponse(head.status, head.reason, head.headers, body, head.version)
            if not head.keep_alive:
                self.close()
            self._settle()
            waiter = self.waiter
            self.waiter = None
            if waiter is not None and not waiter.done():
                waiter.set_result(response)
            then = self.then
            if then is not None:
                self.then = None
                then(response, None)

    @property
    def reusable(self) -> bool:
        return (
            not self.closed
            and self.waiter is None
            and self.then is None
            and self.raw is None
            and self.transport is not None
            and not self.transport.is_closing()
            and self.parser.buffered == 0
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    def __init__(self, size: int) -> None:
        self.idle: deque[_Connection] = deque()
        self.slots = Slots(size)


def _warm(idle: deque[_Connection]) -> _Connection | None:
    """The most recently used idle connection still fit for a request (LIFO), or None."""
    while idle:
        conn = idle.pop()
        if conn.reusable:
            return conn
        conn.close()
    return None


def split_url(url: str) -> tuple[str, int, str]:
    """`http://h:8080/p?q` → ("h", 8080, "/p?q")."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.hostname, parts.port or 80, target


class HttpClient:
    """`await client.request("GET", "http://127.0.0.1:8091/users/1")`; one per process."""

    def __init__(
        self,
        *,
        pool_size_per_origin: int = 32,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        total_timeout: float = 60.0,
        limits: Limits = CLIENT_LIMITS,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.pool_size = pool_size_per_origin
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.limits = limits
        self.default_headers = list(headers)
        self._pools: dict[tuple[str, int], _Pool] = {}
        self._deadlines = _Deadlines()
        self.connections_opened = 0  # for tests and stats: reuse shows as few opens

    async def request(
        self,
        method: str,
        url: str | tuple[str, int, str],
        headers: Iterable[tuple[str, str]] | Mapping[str, str] | Headers | None = None,
        body: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> ClientResponse:
        """Send one request and read its whole response."""
        host, port, target = split_url(url) if isinstance(url, str) else url
        data = self._serialize(method, host, port, target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.total_timeout)
        try:
            return await self._send((host, port), method, data, deadline)
        except TimeoutError as exc:
            if isinstance(exc, ClientError):
                raise
            raise timed_out(method, host, port, target) from None

    def request_now(
        self,
        method: str,
        url: tuple[str, int, str],
        headers: list[tuple[str, str]],
        body: bytes,
        then: Callable[[ClientResponse | None, Exception | None], None],
        *,
        timeout: float | None = None,
    ) -> Callable[[], None] | None:
        """`request` without a coroutine, for the gateway's fast path (client_now.py).

        Only when a slot is free and a warm idle connection is at hand: then the request
        is written now, `then(response, None)` or `then(None, error)` is called later
        with what `request` would have returned or raised, and the result is a callable
        that abandons the request (like cancelling `request`). Otherwise nothing is sent
        and the result is None: use `request`.
        """
        host, port, target = url
        pool = self._pools.get((host, port))
        if pool is None or pool.slots.locked() or not pool.idle:
            return None
        data = self._serialize(method, host, port, target, headers, body)
        conn = _warm(pool.idle)
        if conn is None:
            return None
        pool.slots.take()
        loop = conn._loop
        deadline = loop.time() + (timeout or self.total_timeout)
        exchange = Exchange(self, pool, conn, method, url, data, deadline, then)
        conn.send_now(method, data, exchange.read_deadline, exchange.done)
        return exchange.cancel

    def request_raw_now(
        self,
        method: str,
        origin: tuple[str, int],
        data: bytes,
        taker: RawTaker,
        *,
        timeout: float | None = None,
    ) -> Callable[[], None] | None:
        """`request_now` with bytes the caller serialized (`data`, Host included): the
        response's first read goes to `taker.take(data)`; True = it was one whole plain
        response: the connection is pooled again and `taker.taken()` called; else it is
        parsed as usual and `taker.then(response, error)` gets `request`'s outcome."""
        pool = self._pools.get(origin)
        if pool is None or pool.slots.locked() or not pool.idle:
            return None
        conn = _warm(pool.idle)
        if conn is None:
            return None
        pool.slots.take()
        deadline = conn._loop.time() + (timeout or self.total_timeout)
        url = (origin[0], origin[1], "")
        exchange = RawExchange(self, pool, conn, method, url, data, deadline, taker.then)
        exchange.taker = taker
        conn.send_now(method, data, exchange.read_deadline, exchange.done, exchange)
        return exchange.cancel

    async def request_data(
        self, method: str, origin: tuple[str, int], data: bytes, *, timeout: float | None = None
    ) -> ClientResponse:
        """`request` for a request serialized by the caller (`data`, Host included)."""
        deadline = asyncio.get_running_loop().time() + (timeout or self.total_timeout)
        try:
            return await self._send(origin, method, data, deadline)
        except TimeoutError as exc:
            if isinstance(exc, ClientError):
                raise
            raise timed_out(method, origin[0], origin[1], "") from None

    def _serialize(
        self,
        method: str,
        host: str,
        port: int,
        target: str,
        headers: Iterable[tuple[str, str]] | Mapping[str, str] | Headers | None,
        body: bytes,
    ) -> bytes:
        if type(headers) is list:  # the proxy's case: skip the (slow) Mapping ABC check
            items = headers.copy()
        elif isinstance(headers, Mapping):
            items = list(headers.items())
        else:
            items = list(headers or ())
        if self.default_headers:
            items = self.default_headers + items
        for name, _ in items:  # a plain loop: this runs for every proxied request
            if name.lower() == "host":
                break
        else:
            items.insert(0, ("Host", host if port == 80 else f"{host}:{port}"))
        return serialize_request(method, target, items, body)

    async def get(self, url: str | tuple[str, int, str], **kw: Any) -> ClientResponse:
        return await self.request("GET", url, **kw)

    async def post(
        self, url: str | tuple[str, int, str], body: bytes = b"", **kw: Any
    ) -> ClientResponse:
        return await self.request("POST", url, body=body, **kw)

    async def _send(
        self,
        origin: tuple[str, int],
        method: str,
        data: bytes,
        deadline: float,
        attempts: tuple[int, ...] = (1, 2),
    ) -> ClientResponse:
        """One request within `deadline` (the total timeout, on the loop's clock).

        The common case - a free slot and a warm idle connection - takes no timer but the
        one `conn.send` sets; waiting for a slot or connecting runs under `timeout_at`.
        """
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self.pool_size)
        slots = pool.slots
        if slots.locked():
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        else:
            await slots.acquire()  # returns at once: a slot is free
        loop = asyncio.get_running_loop()
        try:
            for attempt in attempts:
                conn = _warm(pool.idle)
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(origin, deadline)
                read_deadline = min(deadline, loop.time() + self.read_timeout)
                try:
                    response = await conn.send(method, data, read_deadline)
                except TimeoutError:
                    conn.close()
                    if read_deadline >= deadline:
                        raise  # the total timeout: request() words the error
                    raise ClientTimeout(
                        f"no response from {origin[0]}:{origin[1]} in time", request_sent=True
                    ) from None
                except ConnectionError as exc:
                    conn.close()
                    # A reused connection the server had already closed: safe to retry if
                    # nothing came back and the method may be repeated.
                    if reused and not conn.got_bytes and method in IDEMPOTENT and attempt == 1:
                        continue
                    raise ClientError(
                        f"{origin[0]}:{origin[1]}: {exc}", request_sent=True
                    ) from None
                except asyncio.CancelledError:
                    conn.close()
                    raise
                if conn.reusable:
                    pool.idle.append(conn)
                return response
        finally:
            slots.release()
        raise AssertionError("unreachable")

    async def _connect(self, origin: tuple[str, int], deadline: float) -> _Connection:
        """A new connection to `origin`, within the connect timeout and `deadline`."""
        loop = asyncio.get_running_loop()
        connect_deadline = loop.time() + self.connect_timeout
        try:
            async with asyncio.timeout_at(min(connect_deadline, deadline)):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self.limits, self._deadlines), *origin
                )
        except TimeoutError:
            if deadline < connect_deadline:
                raise  # the total timeout ran out first: request() words the error
            raise ConnectError(f"connect to {origin[0]}:{origin[1]} timed out") from None
        except OSError as exc:
            raise ConnectError(
                f"cannot connect to {origin[0]}:{origin[1]}: {exc.strerror or exc}"
            ) from None
        self.connections_opened += 1
        return conn

    async def close(self) -> None:
        """Close every idle connection (in-flight ones close when their request ends)."""
        for pool in self._pools.values():
            while pool.idle:
                pool.idle.pop().close()
        self._pools.clear()
        if not self._deadlines.pending:
            self._deadlines.cancel()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
