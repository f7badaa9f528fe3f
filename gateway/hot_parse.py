"""Reading the commonest request and response from raw bytes, with whole-buffer C calls.

On the request's journey this is the first and the last thing the gateway's hot path
(hot.py) does: a client's request arrives as one read, and the upstream's response as
another. The general path parses each into objects (a `RequestHead` with a `Headers`
list, a `Request`, a `ClientResponse`, a `Response`) and serializes them again; for the
plain request a proxy sees all day that is most of its CPU. Here a head is checked and
cut with a few C calls whatever its length:

    find(CRLF CRLF)           where the head ends
    REQUEST_LINE_RE.match     method, target, and HTTP/1.1 (anything else: not here)
    FIELDS_RE.fullmatch       every field line is `token: value` in canonical form
    *_SPECIAL_RE.split        cuts out the few fields the proxy must look at or drop;
                              what is left is forwarded as it is, in its order

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
# One canonical field line: one space after the colon, a value that neither starts nor
# ends with whitespace and holds no tab (the general parser strips those, so the bytes
# would differ). obs-text (0x80-0xff) passes through both paths alike.
_VALUE = rb"[\x21-\x7e\x80-\xff](?:[\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?"
FIELDS_RE = re.compile(rb"(?:" + TOKEN + rb": " + _VALUE + rb"\r\n)*")

# What a special field is to the hot path (anything else passes through unread).
(HOST, API_KEY, AUTHORIZATION, REQUEST_ID, LENGTH, CONNECTION, DROP, DECLINE) = range(8)

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


def _special_re(names: dict[bytes, int]) -> re.Pattern[bytes]:
    # split() with two groups gives [kept, name, value, kept, name, value, ..., kept].
    alternatives = b"|".join(re.escape(n) for n in names)
    return re.compile(rb"^(" + alternatives + rb"): ([^\r\n]*)\r\n", re.IGNORECASE | re.MULTILINE)


REQUEST_SPECIAL_RE = _special_re(REQUEST_KINDS)
RESPONSE_SPECIAL_RE = _special_re(RESPONSE_KINDS)
# `Connection` values that name no field and keep the connection (what clients send).
KEEP_ALIVE = frozenset({b"keep-alive", b"Keep-Alive"})
# Longest head taken here; longer ones are rare and the general path bounds them.
MAX_HOT_HEAD = 8192


class RequestScan:
    """One plain request, cut into what the hot path reads and what it forwards."""

    __slots__ = ("api_key", "authorization", "body", "credentials", "host", "method",
                 "parts", "path", "query", "request_id")  # fmt: skip

    method: bytes
    path: bytes
    query: bytes
    host: bytes
    request_id: bytes | None
    api_key: bytes | None
    authorization: bytes | None
    # The fields to forward as split() left them (our fields and Content-Length are out);
    # `credentials` are the indexes of credential lines in it, to blank on auth routes.
    parts: list[bytes]
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
    block = data[m.end() : end + 2]
    if block.count(b"\n") > limits.max_header_count or FIELDS_RE.fullmatch(block) is None:
        return None
    parts = REQUEST_SPECIAL_RE.split(block)
    host = request_id = api_key = authorization = length = None
    credentials = []
    for i in range(1, len(parts), 3):
        kind = REQUEST_KINDS[parts[i].lower()]
        value = parts[i + 1]
        if kind == HOST:
            if host is not None:
                return None
            host = value
            parts[i + 1] = b": " + value + b"\r\n"  # forwarded where it stood
            continue
        if kind in (API_KEY, AUTHORIZATION):
            if (api_key if kind == API_KEY else authorization) is not None:
                return None
            if kind == API_KEY:
                api_key = value
            else:
                authorization = value
            parts[i + 1] = b": " + value + b"\r\n"
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
        parts[i] = parts[i + 1] = b""  # re-made by the gateway (or a no-op Connection)
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
    scan.method = m.group(1)
    scan.path, _, scan.query = m.group(2).partition(b"?")
    scan.host = host
    scan.request_id = request_id
    scan.api_key = api_key
    scan.authorization = authorization
    scan.parts = parts
    scan.credentials = credentials
    scan.body = body
    return scan


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
    block = data[line_end : end + 2]
    if block.count(b"\n") > limits.max_header_count or FIELDS_RE.fullmatch(block) is None:
        return None
    status = int(m.group(1))
    if status == 204 or status == 304:
        return None
    parts = RESPONSE_SPECIAL_RE.split(block)
    length = None
    for i in range(1, len(parts), 3):
        kind = RESPONSE_KINDS[parts[i].lower()]
        if kind == LENGTH:
            if length is not None:
                return None
            length = parts[i + 1]
        elif kind == DECLINE or (kind == CONNECTION and parts[i + 1] not in KEEP_ALIVE):
            return None
        parts[i] = parts[i + 1] = b""
    if length is None or not length.isdigit() or len(length) > 19:
        return None
    body = data[end + 4 :]
    if int(length) != len(body) or len(body) > limits.max_body:
        return None
    return status, data[:line_end], b"".join(parts), body
