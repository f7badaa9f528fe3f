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

Simpler than the real thing: nginx runs every request this way (event handlers, no
coroutines); here it is an opt-in for one hot path, and only for bytes bodies.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING

from minisys.http.head import HttpError
from minisys.http.message import Request, Response
from minisys.http.respond import check_response, error_response
from minisys.logs import get_logger

log = get_logger("minisys.http")


class AnswerNow:
    """The fast-path half of `HttpConnection` (server.py keeps the state it reads)."""

    _now: Request | None
    cancel_now: Callable[[], None] | None
    _in_handler: bool
    _closing: bool

    if TYPE_CHECKING:

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
        if self._now is not request:
            return  # abandoned meanwhile (handler timeout, client gone)
        self._now = None
        self.cancel_now = None
        self._in_handler = False
        if self._closing:
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
