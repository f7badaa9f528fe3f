"""Message framing: where a body ends (RFC 9112 §6-§7).

After `head.py` has parsed a head, this module decides how long the body is: a
Content-Length, chunked transfer coding, or (responses only) "until the connection closes".
Getting this wrong is request smuggling: if a proxy and the server behind it disagree on
where a body ends, the tail of one request becomes a second request the proxy never saw.
So the request rules here are the strict ones nginx applies:

    TE and CL together        → 400, close     (the classic smuggling shape)
    TE on HTTP/1.0            → 400, close     (1.0 has no chunked coding)
    TE not ending in chunked  → 400, close     (`chunked, identity`)
    TE with unknown coding    → 501, close     (`gzip`, `xchunked`)
    CL twice, or `5, 5`       → 400, close     (even when equal, as nginx does)
    CL not 1*DIGIT            → 400, close     (`+5`, `0x5`, `1_0`, ` 5`)
    CL above the body limit   → 413, close
    Host missing or doubled   → 400 on HTTP/1.1

It also parses chunk-size lines (`1a;name=value`), hex only, 16 digits at most, extensions
bounded and ignored, and always CRLF (a bare LF in chunked framing is refused, a leniency
the HTTP Garden project flagged in nginx).

Simpler than the real thing: we know no transfer coding but chunked, so gzip/deflate
request bodies earn a 501 where a full server might decode them.
"""

from __future__ import annotations

import re

from minisys.http.head import CONTENT_LENGTH_RE, HttpError, Limits, comma_tokens

# Body kinds a parser can be in after a head.
NO_BODY = 0
LENGTH = 1
CHUNKED = 2
UNTIL_CLOSE = 3

_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_HOST = b"host"
_CONNECTION = b"connection"
_EXPECT = b"expect"

# Fields that must never arrive in a trailer section: they would change framing or routing
# after the fact (RFC 9110 §6.5.1). We drop them rather than let anything merge them.
FORBIDDEN_TRAILERS = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "trailer", "te", "expect"}
)

# 16 hex digits already mean 2**64 bytes; the spec probe sent 18 and nginx said 400.
CHUNK_SIZE_RE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[\x20-\x7e\x80-\xff\t]*)?")


def _transfer_coding(values: list[bytes]) -> None:
    """Accept exactly `chunked`; say 400 or 501 for anything else."""
    codings = comma_tokens(values)
    if codings == [b"chunked"]:
        return
    if not codings:
        raise HttpError(400, "empty Transfer-Encoding")
    if b"chunked" in codings:
        raise HttpError(400, "chunked must be the final and only chunked transfer coding")
    raise HttpError(501, "unsupported transfer coding")


def _content_length(values: list[bytes]) -> int:
    if len(values) != 1:
        raise HttpError(400, "more than one Content-Length")
    if CONTENT_LENGTH_RE.fullmatch(values[0]) is None:
        raise HttpError(400, "invalid Content-Length")
    return int(values[0])


def request_framing(
    version: str, found: dict[bytes, list[bytes]], limits: Limits
) -> tuple[int, int, bool, bool]:
    """(body kind, length, keep_alive, expect_continue) for a request head.

    `found` holds the raw values of the framing fields by lowercase name (parse_fields).
    """
    hosts = found.get(_HOST)
    if hosts is None:
        if version == "1.1":
            raise HttpError(400, "missing Host header")
    elif len(hosts) > 1:
        raise HttpError(400, "more than one Host header")
    conn = comma_tokens(found[_CONNECTION]) if _CONNECTION in found else ()
    if version == "1.1":
        keep_alive = b"close" not in conn
    else:
        keep_alive = b"keep-alive" in conn and b"close" not in conn
    expect = (
        version == "1.1"
        and _EXPECT in found
        and found[_EXPECT][0].lower().strip(b" \t") == b"100-continue"
    )
    te = found.get(_TRANSFER_ENCODING)
    cl = found.get(_CONTENT_LENGTH)
    if te is not None:
        if version == "1.0":
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if cl is not None:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        _transfer_coding(te)
        return CHUNKED, 0, keep_alive, expect
    if cl is not None:
        length = _content_length(cl)
        if length > limits.max_body:
            raise HttpError(413, "request body too large")
        if length:
            return LENGTH, length, keep_alive, expect
    return NO_BODY, 0, keep_alive, False


def response_framing(
    version: str, status: int, method: str | None, found: dict[bytes, list[bytes]]
) -> tuple[int, int, bool]:
    """(body kind, length, keep_alive) for a response to `method` (RFC 9112 §6.3)."""
    conn = comma_tokens(found[_CONNECTION]) if _CONNECTION in found else ()
    if version == "1.1":
        keep_alive = b"close" not in conn
    else:
        keep_alive = b"keep-alive" in conn and b"close" not in conn
    if method == "HEAD" or status < 200 or status in (204, 304):
        return NO_BODY, 0, keep_alive
    if method == "CONNECT" and 200 <= status < 300:
        return UNTIL_CLOSE, 0, False
    te = found.get(_TRANSFER_ENCODING)
    if te is not None:
        if comma_tokens(te)[-1:] == [b"chunked"] and version == "1.1":
            return CHUNKED, 0, keep_alive
        return UNTIL_CLOSE, 0, False
    cl = found.get(_CONTENT_LENGTH)
    if cl is not None:
        # Identical duplicates in a response are allowed to collapse (RFC 9110 §8.6).
        if len(set(cl)) != 1 or CONTENT_LENGTH_RE.fullmatch(cl[0]) is None:
            raise HttpError(502, "invalid Content-Length in response")
        length = int(cl[0])
        return (LENGTH if length else NO_BODY), length, keep_alive
    return UNTIL_CLOSE, 0, False


def parse_chunk_size(line: bytes) -> int:
    """`1a;ext=1` → 26. The line comes without its CRLF."""
    m = CHUNK_SIZE_RE.fullmatch(line)
    if m is None:
        raise HttpError(400, "invalid chunk size line")
    return int(m.group(1), 16)


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; an empty `data` would end the body, so refuse it."""
    if not data:
        raise ValueError("an empty chunk ends the body; send LAST_CHUNK instead")
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
