"""The incremental HTTP/1.1 parsers: bytes in, events out, no sockets (sans-I/O).

Every HTTP hop on the request's journey runs one of these: the gateway and the appserver a
`RequestParser` per client connection, the gateway's proxy client and the load generator a
`ResponseParser` per upstream connection. Feed bytes as they arrive, in any split, then call
`next_event()` until it returns `None` (meaning "need more data"):

    RequestHead / ResponseHead   the parsed head; says how the body is framed
    Data                         some body bytes (chunked framing already removed)
    EndOfMessage                 the body is complete; carries any trailer fields
    ConnectionClosed             the peer closed cleanly between messages

A message is parsed with one state machine (the table below). Pipelined requests simply
follow each other: after EndOfMessage the parser is back in HEAD and parses the next one.

    state       input                          next state
    HEAD        complete head, no body         EOM
    HEAD        complete head, Content-Length  LENGTH
    HEAD        complete head, chunked         CHUNK_SIZE
    HEAD        complete head, read-to-close   UNTIL_CLOSE   (responses only)
    LENGTH      last body byte                 EOM
    CHUNK_SIZE  size line `n`, n > 0           CHUNK_DATA
    CHUNK_SIZE  size line `0`                  TRAILERS
    CHUNK_DATA  n bytes                        CHUNK_CRLF
    CHUNK_CRLF  CRLF                           CHUNK_SIZE
    TRAILERS    empty line                     EOM
    UNTIL_CLOSE end of file                    EOM
    EOM         (emit EndOfMessage)            HEAD
    any         a protocol error               ERROR         (every later call re-raises)

Finding the head is the hot path: one `bytes.find` for the blank line over what is
buffered (remembering how far it already looked, so a head arriving byte by byte is not
searched again from its start each time), one `split` into lines, and one compiled regex
per line. No per-byte loops. (A head that trickles in is still re-joined per read; the
header limits bound that copying to a few tens of kilobytes per read.)

Simpler than the real thing: no HTTP/0.9, no `Upgrade` or `CONNECT` tunnelling on the
server side, and the parser never stalls itself; the caller bounds how much it feeds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from minisys.http.framing import (
    CHUNKED,
    FORBIDDEN_TRAILERS,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    parse_chunk_size,
    request_framing,
    response_framing,
)
from minisys.http.head import (
    DEFAULT_LIMITS,
    Headers,
    HttpError,
    Limits,
    parse_fields,
    parse_request_line,
    parse_status_line,
    split_lines,
)


@dataclass(slots=True)
class RequestHead:
    method: str
    target: str
    version: str  # "1.0" or "1.1"
    headers: Headers
    keep_alive: bool
    expect_continue: bool
    # -1 for chunked, else the Content-Length (0 when there is no body).
    content_length: int


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: str
    version: str
    headers: Headers
    keep_alive: bool
    # -1 for chunked, -2 for "until the connection closes", else the Content-Length.
    content_length: int


@dataclass(slots=True)
class Data:
    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    trailers: Headers | None = None  # None when the message had no trailer fields


@dataclass(slots=True)
class ConnectionClosed:
    pass


Event = RequestHead | ResponseHead | Data | EndOfMessage | ConnectionClosed

# Parser states (see the table in the module docstring).
HEAD = "HEAD"
BODY_LENGTH = "LENGTH"
CHUNK_SIZE = "CHUNK_SIZE"
CHUNK_DATA = "CHUNK_DATA"
CHUNK_CRLF = "CHUNK_CRLF"
TRAILERS = "TRAILERS"
BODY_UNTIL_CLOSE = "UNTIL_CLOSE"
EOM = "EOM"
CLOSED = "CLOSED"
ERROR = "ERROR"


class _Parser:
    """Buffering, head finding and body framing shared by both directions."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.state = HEAD
        self._buf = b""
        self._pos = 0
        self._scanned = 0  # bytes after _pos already searched for the end of the head
        self._remaining = 0  # body bytes still due in LENGTH / CHUNK_DATA
        self._body_total = 0  # chunked bytes so far, checked against limits.max_body
        self._trailers: list[bytes] = []
        self._trailer_bytes = 0
        self._eof = False
        self._error: HttpError | None = None
        # _next_whole: the head whose body is still arriving, and that body so far.
        self.current: RequestHead | ResponseHead | None = None
        self._parts: list[bytes] = []

    # --- input ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add bytes received from the peer."""
        if self._pos >= len(self._buf):
            self._buf = data
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def feed_eof(self) -> None:
        """The peer closed its side; pending events finish, then ConnectionClosed or error."""
        self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf) - self._pos

    # --- output --------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or None if more bytes are needed. Raises HttpError on bad input."""
        if self._error is not None:
            raise self._error
        try:
            state = self.state
            if state is HEAD:
                return self._next_head()
            if state is EOM:
                self.state = HEAD
                self._scanned = 0
                return self._end_of_message()
            if state is BODY_LENGTH:
                return self._next_length_data()
            if state is CHUNK_DATA:
                return self._next_chunk_data()
            if state is CHUNK_SIZE or state is CHUNK_CRLF or state is TRAILERS:
                return self._next_chunk_framing()
            if state is BODY_UNTIL_CLOSE:
                return self._next_until_close()
            return None
        except HttpError as exc:
            self.state = ERROR
            self._error = self._wrap_error(exc)
            raise self._error from None

    def _next_whole(self) -> tuple[RequestHead | ResponseHead, bytes] | None:
        """The hot path of both sides: the next whole message as (head, body), without
        Data and EndOfMessage objects when the body is already here. Interim responses
        (1xx but 101) are skipped; trailer fields dropped."""
        while True:
            event = self.next_event()
            if event is None:
                return None
            kind = type(event)
            if kind is RequestHead or kind is ResponseHead:
                if kind is ResponseHead and event.status < 200 and event.status != 101:  # type: ignore[union-attr]
                    continue
                if self.state is EOM:  # no body: skip the EndOfMessage event
                    self.state = HEAD
                    return event, b""  # type: ignore[return-value]
                body = self._whole_length_body()
                if body is not None:
                    return event, body  # type: ignore[return-value]
                self.current = event  # type: ignore[assignment]
                self._parts = []
            elif kind is Data:
                self._parts.append(event.data)  # type: ignore[union-attr]
            elif kind is EndOfMessage:
                head = self.current
                if head is None:
                    continue
                self.current = None
                parts = self._parts
                self._parts = []
                return head, parts[0] if len(parts) == 1 else b"".join(parts)
            else:
                return None

    def _wrap_error(self, exc: HttpError) -> HttpError:
        return exc

    def _end_of_message(self) -> EndOfMessage:
        if not self._trailers:
            return EndOfMessage()
        lines = self._trailers
        self._trailers = []
        headers, _ = parse_fields(lines, 0, self.limits)
        return EndOfMessage(
            Headers((n, v) for n, v in headers if n.lower() not in FORBIDDEN_TRAILERS)
        )

    def _find_head(self) -> list[bytes] | None:
        """Cut one complete head off the buffer and split it into lines, or return None."""
        buf = self._buf
        pos = self._pos
        end = len(buf)
        # RFC 9112 §2.2: ignore at least one empty line before a request line.
        while pos < end and (
            buf[pos] == 10 or (buf[pos] == 13 and buf[pos + 1 : pos + 2] == b"\n")
        ):
            pos += 2 if buf[pos] == 13 else 1
        self._pos = pos
        if pos >= end:
            if self._eof:
                self.state = CLOSED
            return None
        start = pos + self._scanned
        crlf = buf.find(b"\n\r\n", start)
        lf = buf.find(b"\n\n", start, crlf + 1 if crlf >= 0 else end)
        if lf >= 0:
            idx, term = lf, 2
        elif crlf >= 0:
            idx, term = crlf, 3
        else:
            self._check_incomplete_head(buf, pos, end)
            return None
        head = buf[pos:idx]
        if head[-1:] == b"\r":
            head = head[:-1]
        self._pos = idx + term
        self._scanned = 0
        lines = split_lines(head)
        if len(head) - len(lines[0]) > self.limits.max_header_bytes:
            raise HttpError(431, "header section too large")
        return lines

    def _check_incomplete_head(self, buf: bytes, pos: int, end: int) -> None:
        limits = self.limits
        pending = end - pos
        self._scanned = max(0, pending - 2)
        first_lf = buf.find(b"\n", pos, pos + limits.max_request_line + 2)
        if first_lf < 0:
            if pending > limits.max_request_line + 1:
                raise HttpError(414, "request line too long")
        elif end - first_lf > limits.max_header_bytes + 4:
            raise HttpError(431, "header section too large")
        if self._eof:
            raise HttpError(400, "connection closed in the middle of a head")

    def _start_body(self, kind: int, length: int) -> None:
        if kind == NO_BODY:
            self.state = EOM
        elif kind == LENGTH:
            self.state = BODY_LENGTH
            self._remaining = length
        elif kind == CHUNKED:
            self.state = CHUNK_SIZE
            self._body_total = 0
        else:
            self.state = BODY_UNTIL_CLOSE

    def _next_length_data(self) -> Data | None:
        available = len(self._buf) - self._pos
        if available == 0:
            if self._eof:
                raise HttpError(400, "connection closed in the middle of a body")
            return None
        n = min(available, self._remaining)
        pos = self._pos
        data = self._buf[pos : pos + n] if n < available or pos else self._buf
        self._pos = pos + n
        self._remaining -= n
        if self._remaining == 0:
            self.state = EOM
        return Data(data)

    def _whole_length_body(self) -> bytes | None:
        """A Content-Length body already buffered whole, taken in one slice (else None).

        The whole-message paths (next_message, next_response) use this right after the
        head: a small body usually arrives with its head, and slicing it here skips the
        Data and EndOfMessage events (about a third of parsing a small response).
        """
        if self.state is not BODY_LENGTH:
            return None
        pos = self._pos
        end = pos + self._remaining
        if end > len(self._buf):
            return None
        self._pos = end
        self._remaining = 0
        self.state = HEAD
        self._scanned = 0
        return self._buf[pos:end]

    def _next_chunk_data(self) -> Data | None:
        data = self._next_length_data()
        if self.state is EOM:
            self.state = CHUNK_CRLF
        return data

    def _read_line(self) -> bytes | None:
        """One CRLF-terminated line of chunked framing; a bare LF is an error."""
        buf = self._buf
        pos = self._pos
        i = buf.find(b"\n", pos, pos + self.limits.max_chunk_line + 2)
        if i < 0:
            if len(buf) - pos > self.limits.max_chunk_line + 1:
                raise HttpError(400, "chunk line too long")
            if self._eof:
                raise HttpError(400, "connection closed in the middle of a chunked body")
            return None
        if i == pos or buf[i - 1] != 13:
            raise HttpError(400, "bare LF in chunked framing")
        self._pos = i + 1
        return buf[pos : i - 1]

    def _next_chunk_framing(self) -> Event | None:
        while True:
            line = self._read_line()
            if line is None:
                return None
            state = self.state
            if state is CHUNK_CRLF:
                if line:
                    raise HttpError(400, "chunk data not followed by CRLF")
                self.state = CHUNK_SIZE
            elif state is CHUNK_SIZE:
                size = parse_chunk_size(line)
                if size == 0:
                    self.state = TRAILERS
                    self._trailer_bytes = 0
                    continue
                self._body_total += size
                if self._body_total > self.limits.max_body:
                    raise HttpError(413, "request body too large")
                self._remaining = size
                self.state = CHUNK_DATA
                return self._next_chunk_data()
            elif line:
                self._trailer_bytes += len(line)
                if self._trailer_bytes > self.limits.max_header_bytes:
                    raise HttpError(431, "trailer section too large")
                self._trailers.append(line)
            else:
                self.state = HEAD
                self._scanned = 0
                return self._end_of_message()

    def _next_until_close(self) -> Event | None:
        available = len(self._buf) - self._pos
        if available:
            data = self._buf[self._pos :]
            self._buf = b""
            self._pos = 0
            self._body_total += available
            if self._body_total > self.limits.max_body:
                raise HttpError(413, "response body too large")
            return Data(data)
        if self._eof:
            self.state = CLOSED
            return EndOfMessage()
        return None

    def _next_head(self) -> Event | None:
        raise NotImplementedError


class RequestParser(_Parser):
    """Server side: parses requests, pipelined or not, and refuses anything ambiguous.

    Besides the event API, `next_message()` hands out whole requests (head and body):
    the server's hot path, which skips the per-event objects for the common case.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)

    @property
    def closed(self) -> bool:
        """The peer closed cleanly between requests."""
        return self.state is CLOSED

    def next_message(self) -> tuple[RequestHead, bytes] | None:
        """The next whole request as (head, body), or None if more bytes are needed.

        Trailer fields of chunked bodies are dropped. Raises HttpError like next_event.
        """
        return self._next_whole()  # type: ignore[return-value]

    def _next_head(self) -> Event | None:
        lines = self._find_head()
        if lines is None:
            return ConnectionClosed() if self.state is CLOSED else None
        method, target, version = parse_request_line(lines[0], self.limits)
        headers, found = parse_fields(lines, 1, self.limits)
        kind, length, keep_alive, expect = request_framing(version, found, self.limits)
        self._start_body(kind, length)
        return RequestHead(
            method,
            target,
            version,
            headers,
            keep_alive,
            expect,
            -1 if kind == CHUNKED else length,
        )


class ResponseParser(_Parser):
    """Client side: parses responses; call `expect_response(method)` per request sent."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._methods: deque[str] = deque()

    def expect_response(self, method: str) -> None:
        """Record that a request with `method` was sent (HEAD responses have no body)."""
        self._methods.append(method)

    @property
    def closed(self) -> bool:
        """The peer closed (cleanly between responses, or ending a read-until-close body)."""
        return self.state is CLOSED

    def next_response(self) -> tuple[ResponseHead, bytes] | None:
        """The next final response as (head, body), or None if more bytes are needed.

        Interim 1xx responses (but 101) are skipped, trailer fields dropped. Raises
        HttpError (502) like next_event.
        """
        return self._next_whole()  # type: ignore[return-value]

    def _wrap_error(self, exc: HttpError) -> HttpError:
        # A broken response is the upstream's fault: a gateway answers it with 502.
        return HttpError(502, f"bad response from upstream: {exc.reason}")

    def _next_head(self) -> Event | None:
        lines = self._find_head()
        if lines is None:
            return ConnectionClosed() if self.state is CLOSED else None
        version, status, reason = parse_status_line(lines[0])
        headers, found = parse_fields(lines, 1, self.limits)
        method = self._methods[0] if self._methods else None
        kind, length, keep_alive = response_framing(version, status, method, found)
        if kind == LENGTH and length > self.limits.max_body:
            raise HttpError(413, "response body too large")
        if status >= 200 or status == 101:
            if self._methods:
                self._methods.popleft()
            self._start_body(kind, length)
        if kind == CHUNKED:
            length = -1
        elif kind == UNTIL_CLOSE:
            length = -2
        return ResponseHead(status, reason, version, headers, keep_alive, length)
