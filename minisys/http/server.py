"""The HTTP/1.1 server: one `RequestParser` and one small state machine per connection.

On the request's journey this is where the gateway and the appserver receive requests: the
kernel's `Connection` (minisys/server.py) accepts the socket, this module turns its bytes
into `Request`s with the sans-I/O parser (codec.py), calls the handler
`async (Request) -> Response`, and writes the responses back in order.

A connection is always in one of these states (checked by the timer sweep):

    state       meaning                                   bounded by
    IDLE        between requests, nothing buffered        idle_timeout  (close quietly)
    HEAD        part of a head received                   header_timeout → 408, close
    BODY        head done, body still arriving            body_timeout   → 408, close
    HANDLING    a handler runs (more requests may queue)  handler_timeout → 503
    CLOSING     `Connection: close`, an error, or drain   the last response is flushed

Pipelined requests are parsed as they arrive and queued (at most `max_pipelined`; past that
we stop reading from the socket), and handled one at a time, so responses leave in order.
After a framing error nothing more is read: the error is answered after any responses
still due, with `Connection: close`, and the socket is closed.

Why one sweep instead of a timer per request: `loop.call_later` costs an allocation and a
heap push per call; at tens of thousands of requests per second that shows. One ticker per
server (`minisys/ticker.py`, a thread, so no asyncio timer stays armed) wakes the loop a
few times per timeout to compare timestamps, like the kernel's idle sweep.

Why asyncio.Protocol, not streams: bytes are parsed the moment they arrive, reading can
be paused for backpressure and pipelining caps without a reader task in between, and the
project's RESP measurements (DESIGN.md) favoured Protocols clearly. For HTTP the same codec
and handler on streams (`bench/http_server.py --streams`) came out between 0.5x and 1.15x
of this server in five runs on a busy shared 2-core machine: not settled here (README.md).

Simpler than the real thing: nginx also limits request rate, buffers big bodies to disk,
and answers a header timeout by closing silently; we answer 408 first, as RFC 9110 allows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable

from minisys.http.answer_now import AnswerNow
from minisys.http.codec import RequestHead, RequestParser
from minisys.http.framing import LAST_CHUNK, encode_chunk
from minisys.http.head import DEFAULT_LIMITS, HttpError, Limits
from minisys.http.message import Request, Response, problem_body
from minisys.http.respond import check_response, common_fields, error_response, status_line
from minisys.http.serialize import add_fields, encode_head
from minisys.logs import get_logger
from minisys.server import Connection, Server, ServerConfig
from minisys.ticker import Ticker

log = get_logger("minisys.http")

Handler = Callable[[Request], Awaitable[Response]]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Bodies below this are joined to the head so the response leaves in one send(); copying
# a bigger body just to save a syscall costs more than the syscall.
JOIN_LIMIT = 64 * 1024


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    """Per-server HTTP bounds (the connection-level ones live in ServerConfig)."""

    limits: Limits = DEFAULT_LIMITS
    # A head must arrive within this many seconds (nginx client_header_timeout: 60 s).
    header_timeout: float = 60.0
    # The whole request, head and body, must arrive within this (nginx client_body_timeout).
    body_timeout: float = 60.0
    # A handler running longer is cancelled and answered with handler_timeout_status.
    handler_timeout: float = 60.0
    handler_timeout_status: int = 503
    # After this many requests the connection is closed (nginx keepalive_requests: 1000),
    # so long-lived connections rebalance across servers now and then.
    max_requests_per_connection: int = 1000
    # Requests parsed but not yet answered, per connection; past this we stop reading.
    max_pipelined: int = 16
    # The Server header; empty to send none.
    server_header: str = "minisys"


class HttpConnection(AnswerNow, Connection):
    """One client connection: parse, queue, handle one at a time, answer in order."""

    def __init__(self, handler: Handler, settings: HttpSettings) -> None:
        self.handler = handler
        self.settings = settings
        self.parser = RequestParser(settings.limits)
        self._queue: deque[Request | HttpError] = deque()
        # The task handling the current request: one per request, so that each handler
        # runs in its own copy of the context (ContextVars set by one never leak into the
        # next). A per-connection task awaiting a queue measured no faster here.
        self._task: asyncio.Task | None = None
        self._in_handler = False  # the handler itself runs (what handler_timeout bounds)
        self._reading_since = 0.0  # first byte of a request not yet complete (0 = none)
        self._handler_since = 0.0  # when the running handler started
        self._timed_out = False
        self._served = 0
        self._stop_reading = False  # after a close-request or an error: read nothing more
        self._paused = False  # reading paused because max_pipelined requests are queued
        self._continued: RequestHead | None = None  # the head we sent 100 Continue for
        self._write_ready: asyncio.Future | None = None
        # The request `handle_now` took (the callback fast path, below), and what the
        # handler left us to call if that request must be abandoned.
        self._now: Request | None = None
        self.cancel_now: Callable[[], None] | None = None

    def on_connect(self) -> None:
        self._loop = asyncio.get_running_loop()

    # --- input -------------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        if self._stop_reading:
            return
        if (
            self.take_request is not None  # the raw fast path (answer_now.py), when idle
            and self._now is None
            and self._task is None
            and not self._queue
            and self.parser.current is None
            and not self.parser.buffered
            and self.take_request(data)
        ):
            return
        self.parser.feed(data)
        self._parse()
        if self._queue and self._task is None and self._now is None:
            self._dispatch()

    def on_eof(self) -> bool | None:
        self.parser.feed_eof()
        if not self._stop_reading:
            self._parse()
        self._stop_reading = True
        if self._queue and self._task is None and self._now is None:
            self._dispatch()
        # Keep our side open while responses are still due (a client may half-close).
        return True if (self._task is not None or self._now is not None or self._queue) else None

    def _parse(self) -> None:
        parser = self.parser
        queue = self._queue
        while not self._stop_reading:
            if len(queue) >= self.settings.max_pipelined:
                if not self._paused and self.transport is not None:
                    self._paused = True
                    self.transport.pause_reading()
                break
            try:
                message = parser.next_message()
                if message is None:
                    if parser.closed:
                        self._stop_reading = True
                    break
                head, body = message
                request = Request(
                    head.method,
                    head.target,
                    head.headers,
                    body,
                    version=head.version,
                    peer=self.peer,
                    keep_alive=head.keep_alive,
                )
            except HttpError as err:
                self._stop_reading = True
                queue.append(err)
                break
            queue.append(request)
            self._reading_since = 0.0
            if not head.keep_alive:
                self._stop_reading = True
            if not parser.buffered:
                break  # the usual case: one whole request per read, nothing left to look at
        current = parser.current
        if current is None and not parser.buffered:
            self._reading_since = 0.0
            return
        if not self._reading_since:
            self._reading_since = time.monotonic()
        if current is not None:
            if not self.busy:
                self.set_busy(True)
            if not queue and self._task is None and self._now is None:
                self._send_continue()

    def _send_continue(self) -> None:
        # 100 Continue may only go out when it is this request's turn: earlier pipelined
        # responses must be written first, so _dispatch calls this again when they are.
        current = self.parser.current
        if current is not None and current.expect_continue and current is not self._continued:
            self._continued = current
            self.write(CONTINUE)

    # --- handling ----------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start the next queued request, or finish up when nothing is left."""
        if self._queue:
            item = self._queue.popleft()
            if type(item) is HttpError:
                self._queue.clear()
                self._write_response(None, error_response(item))
                return
            if not self.busy:
                self.set_busy(True)
            self._handler_since = time.monotonic()
            self._in_handler = True
            self._now = item
            try:
                taken = self.handle_now(item)
            except Exception:
                log.exception("handler failed for %s %s", item.method, item.target)
                self.answer_now(item, error_response(HttpError(500, "the handler failed")))
                return
            if not taken:
                self._now = None
                self._task = self._loop.create_task(self._handle(item))
            return
        if self._stop_reading:
            if not self._closing:
                self.close()
            return
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
            self._parse()
            if self._queue:
                self._dispatch()
                return
        if self.parser.current is not None:
            self._send_continue()
        elif self.busy:
            self.set_busy(False)

    async def _handle(self, request: Request) -> None:
        self._in_handler = True  # the handler timeout covers this part, not the writing
        try:
            try:
                response = await self.handler(request)
                if type(response) is not Response or type(response.body) is not bytes:
                    check_response(response)
            except HttpError as err:
                response = error_response(err)
            except asyncio.CancelledError:
                if not self._timed_out or self._closing:
                    raise
                self._timed_out = False
                status = self.settings.handler_timeout_status
                response = error_response(HttpError(status, "the handler timed out"))
            except Exception:
                log.exception("handler failed for %s %s", request.method, request.target)
                response = error_response(HttpError(500, "the handler failed"))
            self._in_handler = False
            body = response.body
            if type(body) is bytes or isinstance(body, bytearray | memoryview):
                self._write_response(request, response)
            else:
                await self._stream_response(request, response)
        finally:
            self._task = None
        if not self._closing:
            self._dispatch()

    # --- output ------------------------------------------------------------------------

    def _head_bytes(
        self, request: Request | None, response: Response, length: int | None, chunked: bool
    ) -> tuple[bytes, bool]:
        """The response head and whether the connection stays open after it."""
        parts = [status_line(response.status, response.reason)]
        count, framed, close = add_fields(parts, response.headers)
        keep = (
            request is not None
            and request.keep_alive
            and not close
            and not self.server.draining
            and self._served + 1 < self.settings.max_requests_per_connection
            and (length is not None or chunked)
        )
        status = response.status
        if not framed and status >= 200 and status != 204 and status != 304:
            if chunked:
                parts.append("Transfer-Encoding: chunked\r\n")
                count += 1
            elif length is not None:
                parts += ("Content-Length: ", str(length), "\r\n")
                count += 1
        common, lines = common_fields(self.settings.server_header)
        parts.append(common)
        count += lines
        if not keep:
            if not close:
                parts.append("Connection: close\r\n")
                count += 1
        elif request.version == "1.0":
            parts.append("Connection: keep-alive\r\n")
            count += 1
        parts.append("\r\n")
        return encode_head(parts, count + 2), keep

    def _write_response(self, request: Request | None, response: Response) -> None:
        body = response.body if type(response.body) is bytes else bytes(response.body)
        try:
            head, keep = self._head_bytes(request, response, len(body), False)
        except ValueError as exc:
            # A header value with CR/LF (or a bad status): never send it, send a 500.
            log.error("bad response from handler: %s", exc)
            response = error_response(HttpError(500, "the handler built an invalid response"))
            body = response.body  # type: ignore[assignment]
            head, keep = self._head_bytes(request, response, len(body), False)
        status = response.status
        head_only = request is not None and request.method == "HEAD"
        if head_only or status < 200 or status == 204 or status == 304:
            self.write(head)
        else:
            if len(body) < JOIN_LIMIT:
                self.write(head + body)
            else:
                self.write(head)
                self.write(body)
        self._finish(keep)

    async def _stream_response(self, request: Request, response: Response) -> None:
        body = response.body
        assert isinstance(body, AsyncIterable)
        chunked = request.version == "1.1"
        try:
            head, keep = self._head_bytes(request, response, None, chunked)
        except ValueError as exc:
            log.error("bad response from handler: %s", exc)
            self._write_response(request, error_response(HttpError(500, "bad response")))
            return
        self.write(head)
        try:
            if request.method != "HEAD":
                async for piece in body:
                    if self._closing:
                        break
                    if piece:
                        self.write(encode_chunk(piece) if chunked else piece)
                        if self._write_ready is not None:
                            await self._write_ready
                if chunked:
                    self.write(LAST_CHUNK)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            # The head is out, so no error status can be sent any more: cut the
            # connection, which tells the client the body is incomplete.
            log.exception("streaming body failed for %s %s", request.method, request.target)
            self._stop_reading = True
            self.abort()
            return
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        self._finish(keep)

    def _finish(self, keep: bool) -> None:
        self._served += 1
        if not keep:
            self._stop_reading = True
            self._queue.clear()
            self.close()

    # --- timers, backpressure, shutdown ------------------------------------------------

    def check_timers(self, now: float) -> None:
        """Called by the server's sweep: enforce the header, body and handler timeouts."""
        if self._closing:
            return
        settings = self.settings
        if self._now is not None:
            if self._in_handler and now - self._handler_since > settings.handler_timeout:
                status = settings.handler_timeout_status
                self._abandon_now(HttpError(status, "the handler timed out"))
        elif self._task is not None:
            if (
                self._in_handler
                and now - self._handler_since > settings.handler_timeout
                and not self._timed_out
            ):
                self._timed_out = True
                self._task.cancel()
        elif self._reading_since and not self._queue:
            in_body = self.parser.current is not None
            limit = settings.body_timeout if in_body else settings.header_timeout
            if now - self._reading_since > limit:
                self._stop_reading = True
                what = "body" if in_body else "header"
                self._queue.append(HttpError(408, f"request {what} not received in time"))
                self._dispatch()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_ready is None:
            self._write_ready = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        super().resume_writing()
        waiter = self._write_ready
        self._write_ready = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def refusal(self) -> bytes:
        body = problem_body(503, detail="too many connections")
        return (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
        )

    def on_drain(self) -> None:
        # Idle or mid-head: close now. Otherwise the response in flight carries
        # `Connection: close` (see _head_bytes) and the connection closes after it.
        if not self.busy:
            self.close()

    def on_close(self, exc: Exception | None) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._now is not None:
            self._abandon_now(None)
        waiter = self._write_ready
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("client went away"))
            waiter.exception()  # retrieved, so asyncio does not log it if nobody awaits


# Builds one connection from the server's handler and settings: HttpConnection itself, or
# a subclass that reads something before HTTP (the gateway's PROXY v1 line).
ConnectionFactory = Callable[[Handler, HttpSettings], HttpConnection]


class HttpServer(Server):
    """A Server whose connections speak HTTP, plus the sweep that enforces HTTP timeouts."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        handler: Handler,
        settings: HttpSettings,
        connection_factory: ConnectionFactory = HttpConnection,
    ) -> None:
        super().__init__(name, config, lambda: connection_factory(handler, settings))
        self.settings = settings
        self._sweeper_ticker: Ticker | None = None

    async def start(self) -> None:
        await super().start()
        s = self.settings
        # Four looks per shortest timeout: a timeout fires between 1x and 1.25x its value.
        interval = min(
            max(min(s.header_timeout, s.body_timeout, s.handler_timeout) / 4, 0.005), 1.0
        )
        # A thread's tick rather than an asyncio.sleep loop: an armed asyncio timer makes
        # every loop turn dearer (minisys/ticker.py).
        loop = asyncio.get_running_loop()
        self._sweeper_ticker = Ticker(loop, interval, self._sweep_timers).start()

    def _sweep_timers(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timers(now)  # type: ignore[attr-defined]

    async def drain_and_close(self) -> None:
        try:
            await super().drain_and_close()
        finally:
            if self._sweeper_ticker is not None:
                self._sweeper_ticker.stop()


def http_server(
    name: str,
    config: ServerConfig,
    handler: Handler,
    *,
    settings: HttpSettings | None = None,
    limits: Limits | None = None,
    connection_factory: ConnectionFactory = HttpConnection,
) -> HttpServer:
    """An HTTP server calling `handler` for every request; `await server.start()` binds it.

    `connection_factory(handler, settings)` makes each connection (default HttpConnection).
    """
    settings = settings or HttpSettings()
    if limits is not None:
        settings = dataclasses.replace(settings, limits=limits)
    return HttpServer(name, config, handler, settings, connection_factory)
