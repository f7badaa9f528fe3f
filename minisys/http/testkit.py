"""Test helpers for anything that speaks HTTP: a server in a thread, and a raw-socket probe.

Not on the request's journey: this is the bench where the journey is checked. The HTTP
tests, and the gateway's and appserver's, need a real server to point blocking clients at
(`http.client`, `urllib`, `curl`) and a way to send exact bytes - including malformed ones -
and see what comes back and whether the connection was closed. That is what the spec's
raw-socket probe of nginx did, and what `probe` does.

    with ServerThread(lambda cfg: http_server("t", cfg, app)) as srv:
        statuses, closed = probe(srv.port, b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")

`VECTORS` is the smuggling/malformed-input table, as (name, bytes, our status, nginx's status
per specs/http.md): the codec tests, the server tests and the nginx-parity interop test all
run it, so a new vector lands everywhere at once.

No fixed sleeps: `probe` reads until the server closes or a deadline passes, so a test that
expects a close returns as soon as it happens.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

from minisys.http.codec import Data, EndOfMessage, ResponseHead, ResponseParser
from minisys.http.head import HttpError
from minisys.server import Server, ServerConfig


class ServerThread:
    """Run one server (built by `factory(config)`) on its own event loop in a thread."""

    def __init__(
        self, factory: Callable[[ServerConfig], Server], config: ServerConfig | None = None
    ) -> None:
        self.factory = factory
        self.config = config or ServerConfig(idle_timeout=0)
        self.loop = asyncio.new_event_loop()
        self.server: Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()

        async def start() -> Server:
            server = self.factory(self.config)
            await server.start()
            return server

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.address[1]

    def call(self, coro_fn: Callable[[], object], timeout: float = 10.0) -> object:
        """Run `coro_fn()` (a coroutine function) on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.server is not None:
            server = self.server
            self.server = None
            asyncio.run_coroutine_threadsafe(server.drain_and_close(), self.loop).result(30)
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_responses(
    sock: socket.socket, count: int | None = None, timeout: float = 5.0, method: str = "GET"
) -> tuple[list[tuple[int, bytes]], bool, bytes]:
    """Read from `sock` until it closes, or `count` complete responses arrived, or `timeout`.

    Returns ([(status, body), ...] of final responses, closed, raw bytes received).
    """
    parser = ResponseParser()
    for _ in range(64):
        parser.expect_response(method)
    responses: list[tuple[int, bytes]] = []
    raw = bytearray()
    status = 0
    body: list[bytes] = []
    closed = False
    deadline = time.monotonic() + timeout
    while count is None or len(responses) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            data = b""
        if not data:
            closed = True
            parser.feed_eof()
        else:
            raw += data
            parser.feed(data)
        try:
            while (event := parser.next_event()) is not None:
                if type(event) is ResponseHead:
                    status = event.status
                    body = []
                elif type(event) is EndOfMessage:
                    if status >= 200:
                        responses.append((status, b"".join(body)))
                elif type(event) is Data:
                    body.append(event.data)
                else:
                    break
        except HttpError:
            break
        if closed:
            break
    return responses, closed, bytes(raw)


def probe(
    port: int, data: bytes, *, host: str = "127.0.0.1", timeout: float = 5.0
) -> tuple[list[int], bool]:
    """Send `data` on a fresh connection; return (statuses answered, whether it closed).

    Reads until the server closes the connection or `timeout` passes, so vectors whose
    answer should keep the connection open must carry `Connection: close` to end quickly.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        responses, closed, _ = read_responses(sock, None, timeout)
    return [status for status, _ in responses], closed


_H = b"GET / HTTP/1.1\r\nHost: x\r\n"
_P = b"POST / HTTP/1.1\r\nHost: x\r\n"
_TE = _P + b"Transfer-Encoding: chunked\r\n\r\n"

# (name, request bytes, our status, nginx 1.22's status or None where it differs by design
# or was not probed). Every one of these must also close the connection.
VECTORS: list[tuple[str, bytes, int, int | None]] = [
    (
        "CL and TE together",
        _P + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        400,
    ),
    ("TE on HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 400),
    ("duplicate CL equal", _P + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400, 400),
    ("duplicate CL differing", _P + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400, 400),
    ("CL list 5, 5", _P + b"Content-Length: 5, 5\r\n\r\nhello", 400, 400),
    ("CL +5", _P + b"Content-Length: +5\r\n\r\nhello", 400, 400),
    ("CL -1", _P + b"Content-Length: -1\r\n\r\n", 400, 400),
    ("CL 0x5", _P + b"Content-Length: 0x5\r\n\r\nhello", 400, 400),
    ("CL 1_0", _P + b"Content-Length: 1_0\r\n\r\n", 400, 400),
    ("CL arabic-indic digit", _P + "Content-Length: \u0665\r\n\r\n".encode(), 400, 400),
    ("CL 20 digits", _P + b"Content-Length: 99999999999999999999\r\n\r\n", 400, 400),
    ("CL over body limit", _P + b"Content-Length: 9999999999\r\n\r\n", 413, 413),
    ("TE xchunked", _P + b"Transfer-Encoding: xchunked\r\n\r\n", 501, 501),
    ("TE gzip", _P + b"Transfer-Encoding: gzip\r\n\r\n", 501, 501),
    ("TE chunked, identity", _P + b"Transfer-Encoding: chunked, identity\r\n\r\n", 400, None),
    (
        "TE chunked twice",
        _P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        None,
    ),
    ("space before colon", _P + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, 400),
    ("obs-fold", _H + b"X-A: 1\r\n  folded\r\n\r\n", 400, 400),
    (
        "obs-fold hiding TE",
        _P + b"X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        400,
    ),
    ("bare CR in value", _H + b"X-A: a\rb\r\n\r\n", 400, 400),
    ("NUL in value", _H + b"X-A: a\x00b\r\n\r\n", 400, 400),
    ("space in name", _H + b"X A: 1\r\n\r\n", 400, 400),
    ("0x80 in name", _H + b"X\x80A: 1\r\n\r\n", 400, None),
    ("whitespace before first field", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400, None),
    ("chunk size 0x10", _TE + b"0x10\r\n", 400, 400),
    ("chunk size 1_0", _TE + b"1_0\r\n", 400, 400),
    ("chunk size -1", _TE + b"-1\r\n", 400, 400),
    ("chunk size 18 hex digits", _TE + b"f" * 18 + b"\r\n", 400, 400),
    ("chunk size over body limit", _TE + b"fffffff\r\n", 413, None),
    ("chunk line bare LF", _TE + b"5\nhello\r\n0\r\n\r\n", 400, None),
    ("chunk data without CRLF", _TE + b"5\r\nhelloXX0\r\n\r\n", 400, 400),
    ("no Host on 1.1", b"GET / HTTP/1.1\r\n\r\n", 400, 400),
    ("two Hosts", _H + b"Host: y\r\n\r\n", 400, 400),
    ("lowercase method", b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400, 400),
    ("HTTP/2.0 request line", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, 505),
    ("HTTP/1.10", b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400, None),
    ("target without a slash", b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n", 400, 400),
    ("10 KB URI", b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, 414),
    ("20 KB header block", _H + b"X-A: " + b"a" * 20000 + b"\r\n\r\n", 431, 400),
    ("200 header fields", _H + b"X-A: 1\r\n" * 200 + b"\r\n", 431, None),
]
