"""The server's callback fast path: a request answered without a Task of its own.

On the request's journey this is how the gateway's usual request passes through the HTTP
server (server.py): normally each request runs its async handler in a new Task, and the
response is written when that Task's coroutine returns. A connection subclass whose
handler can answer from callbacks - the gateway's proxy, whose answer comes from the
pooled client's read callback - overrides `handle_now`: it takes the request and later
calls `answer_now` exactly once. Everything else stays the server's, as on the general
path: the order of pipelined responses, the response head, keep-alive, the handler
timeout (which abandons the request through `cancel_now` and answers 503), and a client
that goes away (which abandons it silently).

Why: a Task per request and the future its handler awaits cost ~15-19 µs of CPU here (a
task awaiting a future resolved by a callback, against the bare callback), and with the
client's fast path (client_now.py) the gateway's request took 518k -> 480k instructions
(callgrind, one client connection).

The raw variant goes one step further for a proxy's commonest request: `take_request`
sees the bytes of a read before the parser does, when the connection is idle with
nothing buffered; a subclass that recognises one whole, plain request in them takes it
(`start_raw`) and later writes the response head it built itself (`answer_raw`): the
server still adds Date/Server, `Connection: close` when it will close, keeps the order
and the handler timeout. Anything it does not recognise goes to the parser as usual.

Simpler than the real thing: nginx runs every request this way (event handlers, no
coroutines); here it is an opt-in for one hot path, and only for bytes bodies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING, Any

from minisys.http.head import HttpError
from minisys.http.message import Request, Response
from minisys.http.respond import check_response, common_bytes, error_response
from minisys.logs import get_logger

log = get_logger("minisys.http")


class AnswerNow:
    """The fast-path half of `HttpConnection` (server.py keeps the state it reads)."""

    _now: Request | None
    cancel_now: Callable[[], None] | None
    _in_handler: bool
    _closing: bool
    _handler_since: float
    _served: int
    _stop_reading: bool
    busy: bool
    settings: Any
    server: Any

    # `take_request(data) -> bool`, when a subclass defines it: see the module docstring.
    take_request: Callable[[bytes], bool] | None = None

    if TYPE_CHECKING:

        def set_busy(self, flag: bool) -> None: ...
        def write(self, data: bytes) -> None: ...
        def close(self) -> None: ...
        def _finish(self, keep: bool) -> None: ...

        def _write_response(self, request: Request | None, response: Response) -> None: ...
        def _dispatch(self) -> None: ...

    def handle_now(self, request: Request) -> bool:
        """Answer `request` without a Task? Return True after arranging one `answer_now`
        call (now or from a later callback), False to run the async handler instead.

        While it is out, `cancel_now` may hold a callable: the server calls it when the
        request is abandoned (handler timeout, client gone); `answer_now` is then ignored.
        """
        return False

    def answer_now(self, request: Request, response: Response) -> None:
        """The response to the request `handle_now` took (bytes bodies only)."""
        if not self._answering(request):
            return
        if type(response) is not Response or type(response.body) is not bytes:
            try:
                check_response(response)
                if isinstance(response.body, AsyncIterable):
                    raise TypeError("a streamed body cannot be answered with answer_now")
            except TypeError:
                log.exception("bad response for %s %s", request.method, request.target)
                response = error_response(HttpError(500, "the handler built an invalid response"))
        self._write_response(request, response)
        if not self._closing:
            self._dispatch()

    def _answering(self, request: Any) -> bool:
        """Is `request` still the one in flight (not abandoned by a handler timeout or a
        gone client)? If so it is no longer out; True when its answer can be written."""
        if self._now is not request:
            return False
        self._now = None
        self.cancel_now = None
        self._in_handler = False
        return not self._closing

    def start_raw(self, request: Any, cancel: Callable[[], None]) -> None:
        """`take_request` took `request` (any object with `method`, `target`, `version`
        and `keep_alive`, standing in for a Request): it is now the one in flight."""
        if not self.busy:
            self.set_busy(True)
        self._handler_since = time.monotonic()
        self._in_handler = True
        self._now = request
        self.cancel_now = cancel

    def answer_raw(self, request: Any, parts: list[bytes], body: bytes) -> None:
        """The response to a request `start_raw` took: `parts` are its status line and
        fields (each ending in CRLF, with Content-Length), `body` its bytes. The server
        adds Date/Server and, when it will not keep the connection, `Connection: close`."""
        if not self._answering(request):
            return
        settings = self.settings
        parts.append(common_bytes(settings.server_header))
        keep = not self.server.draining and self._served + 1 < settings.max_requests_per_connection
        if not keep:
            parts.append(b"Connection: close\r\n")
        parts += (b"\r\n", body)
        self.write(b"".join(parts))
        self._finish(keep)
        if not self._closing:
            self._dispatch()

    def _abandon_now(self, answer: HttpError | None) -> None:
        """Give up the request `handle_now` took; answer `answer` unless the client is gone."""
        request = self._now
        cancel = self.cancel_now
        self._now = None
        self.cancel_now = None
        self._in_handler = False
        if cancel is not None:
            cancel()
        if answer is not None and request is not None and not self._closing:
            self._write_response(request, error_response(answer))
            if not self._closing:
                self._dispatch()
