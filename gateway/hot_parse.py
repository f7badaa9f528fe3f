"""Reading the commonest request and response from raw bytes, with whole-buffer C calls.

On the request's journey this is the first and the last thing the gateway's hot path
(hot.py) does: a client's request arrives as one read, and the upstream's response as
another. The general path parses each into objects (a `RequestHead` with a `Headers`
list, a `Request`, a `ClientResponse`, a `Response`) and serializes them again; for the
plain request a proxy sees all day that is most of its CPU. Here a head is checked and
cut with a handful of C calls on the whole head, and one short loop over its lines:

    find(CRLF CRLF)            where the head ends
    REQUEST_LINE_RE.match      method, target, and HTTP/1.1 (anything else: not here)
    find(" \r\n"), find(":  ")  no value starts or ends with a space (the general path
                               would strip it: the bytes would differ)
    split(CRLF), translate     the field lines; every byte SP, visible ASCII or obs-text
    per line: partition(": ")  the name, looked up as sent in a dict of names already
    and one dict lookup        checked against the token grammar: most pass untouched,
                               the few the proxy reads or re-makes are picked out

Regular expressions over the fields cost more here: sre spends ~100 instructions a byte
on `token: value` lines (callgrind: 11k for nginx's 150-byte field block, 17k more to
split out the special ones), the loop ~2k a line.

A head is taken only if the general parser would accept it and read it the same way, so
both paths forward the same bytes (tests/gateway/test_gateway_hot.py checks it on random
heads). `None` means "not plain": a bare LF, odd spacing that the general path would
normalize, a tab or obs-text where the general path keeps it differently, duplicates of
a field we read, chunked framing, `Expect`, `Upgrade`, hop-by-hop fields to strip,
pipelined bytes after the request... The caller then hands the bytes to the general path
untouched, so declining is always safe.

Simpler than the real thing: nginx parses every request with one hand-written state
machine in C; we have C only in `re` and `bytes`, so we take the common shape fast and
leave the rest to the general parser.
"""

from __future__ import annotations

import re

from minisys.http.head import TOKEN, Limits

# Only these go the hot way; CONNECT, TRACE and HEAD (whose response has no body but a
# length) take the general path.
_METHODS = rb"GET|POST|PUT|DELETE|PATCH|OPTIONS"
REQUEST_LINE_RE = re.compile(rb"(" + _METHODS + rb") (/[\x21-\x7e]*) HTTP/1\.1\r\n")
# A status line whose reason phrase is not empty: reused byte for byte in our answer,
# which is what the general path writes for it (status_line(status, reason)).
STATUS_LINE_RE = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9]) [\x21-\x7e][\x20-\x7e]*\r\n")
TOKEN_RE = re.compile(TOKEN)
# Bytes a field line may hold on the hot path: SP, visible ASCII and obs-text (0x80-0xff).
# Not HTAB, CR, LF, NUL or other controls: the general path strips or refuses those. As a
# translate table marking allowed bytes 1 and others 0, so `0 in line.translate(...)`
# checks a whole head in two C loops.
_MARK = bytes(1 if b == 0x20 or 0x21 <= b <= 0x7E or b >= 0x80 else 0 for b in range(256))

# What a special field is to the hot path (anything else passes through unread).
(PASS, HOST, API_KEY, AUTHORIZATION, REQUEST_ID, LENGTH, CONNECTION, DROP, DECLINE) = range(9)

REQUEST_KINDS = {
    b"host": HOST,
    b"x-api-key": API_KEY,
    b"authorization": AUTHORIZATION,
    b"x-request-id": REQUEST_ID,
    b"content-length": LENGTH,
    b"connection": CONNECTION,
    # Framing, hop-by-hop and gateway-owned fields: the general path knows what to do.
    **dict.fromkeys(
        (b"transfer-encoding", b"te", b"upgrade", b"trailer", b"keep-alive",
         b"proxy-connection", b"proxy-authorization", b"proxy-authenticate", b"expect",
         b"via", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
         b"x-consumer-id", b"forwarded"),
        DECLINE,
    ),
}  # fmt: skip
RESPONSE_KINDS = {
    b"content-length": LENGTH,
    b"connection": CONNECTION,
    # Hop-by-hop fields, and the ones our server writes itself (Date, Server) or we echo.
    **dict.fromkeys(
        (b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"trailer",
         b"proxy-authorization", b"proxy-authenticate", b"date", b"server", b"x-request-id"),
        DROP,
    ),
    b"transfer-encoding": DECLINE,
    b"via": DECLINE,
}  # fmt: skip
# Field names as sent (any case) -> kind, once checked against the token grammar; real
# traffic uses a few dozen spellings, and a flood of new ones is checked each time.
MAX_KNOWN_NAMES = 1024
_request_names: dict[bytes, int] = {}
_response_names: dict[bytes, int] = {}


def _learn(name: bytes, kinds: dict[bytes, int], known: dict[bytes, int]) -> int | None:
    """The kind of a field name not seen before, or None if it is no token."""
    if TOKEN_RE.fullmatch(name) is None:
        return None
    kind = kinds.get(name.lower(), PASS)
    if len(known) < MAX_KNOWN_NAMES:
        known[name] = kind
    return kind


def _field_lines(block: bytes, max_count: int) -> list[bytes] | None:
    """The field lines of a head's field block (each ended by CRLF), if every byte is
    one the hot path takes and no value starts or ends with a space (or is empty)."""
    # find, not `in`: `bytes in bytes` first tries the needle as an int and builds a
    # TypeError to discard (~1.7k instructions a test here).
    if block.find(b" \r\n") >= 0 or block.find(b":  ") >= 0:
        return None
    lines = block.split(b"\r\n")
    lines.pop()  # the empty piece after the last CRLF
    if len(lines) > max_count or 0 in b"".join(lines).translate(_MARK):
        return None
    return lines


# `Connection` values that name no field and keep the connection (what clients send).
KEEP_ALIVE = frozenset({b"keep-alive", b"Keep-Alive"})
# Longest head taken here; longer ones are rare and the general path bounds them.
MAX_HOT_HEAD = 8192


class RequestScan:
    """One plain request, cut into what the hot path reads and what it forwards."""

    __slots__ = ("api_key", "authorization", "body", "credentials", "host", "lines",
                 "method", "path", "query", "request_id")  # fmt: skip

    method: bytes
    path: bytes
    query: bytes
    host: bytes
    request_id: bytes | None
    api_key: bytes | None
    authorization: bytes | None
    # The field lines (without CRLF) to forward, those the gateway re-makes blanked (see
    # `joined`); `credentials` are the indexes of credential lines, blanked on auth routes.
    lines: list[bytes]
    credentials: list[int]
    body: bytes


def scan_request(data: bytes, limits: Limits) -> RequestScan | None:
    """`data` as one plain request, or None if it is anything else (see the docstring)."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HOT_HEAD or end > limits.max_header_bytes:
        return None
    m = REQUEST_LINE_RE.match(data)
    if m is None or m.end() - 2 > limits.max_request_line:
        return None
    lines = _field_lines(data[m.end() : end + 2], limits.max_header_count)
    if lines is None:
        return None
    known = _request_names
    host = request_id = api_key = authorization = length = None
    credentials = []
    for i, line in enumerate(lines):
        name, sep, value = line.partition(b": ")
        kind = known.get(name)
        if kind is None:
            kind = _learn(name, REQUEST_KINDS, known)
            if kind is None:
                return None
        if not sep:
            return None
        if kind == PASS:
            continue
        if kind == HOST:
            if host is not None:
                return None
            host = value
            continue
        if kind in (API_KEY, AUTHORIZATION):
            if (api_key if kind == API_KEY else authorization) is not None:
                return None
            if kind == API_KEY:
                api_key = value
            else:
                authorization = value
            credentials.append(i)
            continue
        if kind == REQUEST_ID:
            if request_id is not None:
                return None
            request_id = value
        elif kind == LENGTH:
            if length is not None:
                return None
            length = value
        elif kind != CONNECTION or value not in KEEP_ALIVE:
            return None
        lines[i] = b""  # re-made by the gateway (or a no-op Connection)
    if host is None:
        return None
    body = data[end + 4 :]
    if length is None:
        if body:
            return None  # pipelined bytes: the general path queues them
    elif not (length.isdigit() and len(length) <= 19 and int(length) == len(body)):
        return None
    if len(body) > limits.max_body:
        return None
    scan = RequestScan()
    scan.method, target = m.groups()
    scan.path, _, scan.query = target.partition(b"?")
    scan.host = host
    scan.request_id = request_id
    scan.api_key = api_key
    scan.authorization = authorization
    scan.lines = lines
    scan.credentials = credentials
    scan.body = body
    return scan


def joined(lines: list[bytes]) -> bytes:
    """Field lines as they go out: each ended by CRLF, the blanked ones left out."""
    text = b"\r\n".join(filter(None, lines))
    return text + b"\r\n" if text else b""


def scan_response(data: bytes, limits: Limits) -> tuple[int, bytes, bytes, bytes] | None:
    """`data` as one whole plain response with a Content-Length body and nothing after
    it, keeping the connection: (status, status line, fields to pass on, body), the
    fields without Content-Length, Date, Server, X-Request-ID and hop-by-hop ones."""
    m = STATUS_LINE_RE.match(data)
    if m is None:
        return None
    line_end = m.end()
    end = data.find(b"\r\n\r\n", line_end - 2)
    if end < 0 or end > MAX_HOT_HEAD or end > limits.max_header_bytes:
        return None
    status = int(m.group(1))
    if status == 204 or status == 304:
        return None
    lines = _field_lines(data[line_end : end + 2], limits.max_header_count)
    if lines is None:
        return None
    known = _response_names
    length = None
    for i, line in enumerate(lines):
        name, sep, value = line.partition(b": ")
        kind = known.get(name)
        if kind is None:
            kind = _learn(name, RESPONSE_KINDS, known)
            if kind is None:
                return None
        if not sep:
            return None
        if kind == PASS:
            continue
        if kind == LENGTH:
            if length is not None:
                return None
            length = value
        elif kind == DECLINE or (kind == CONNECTION and value not in KEEP_ALIVE):
            return None
        lines[i] = b""
    if length is None or not length.isdigit() or len(length) > 19:
        return None
    body = data[end + 4 :]
    if int(length) != len(body) or len(body) > limits.max_body:
        return None
    return status, data[:line_end], joined(lines), body
