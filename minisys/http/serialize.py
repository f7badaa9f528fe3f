"""Writing messages: heads, whole messages and chunks as bytes (sans-I/O).

The mirror of `codec.py`: the appserver and gateway turn their responses into bytes here,
and the proxy client and load generator their requests. A message is built as a list of
str pieces joined once and encoded once (latin-1, so each char is one byte) - the cheapest
way to make bytes in CPython, and the hot path of every response.

What we send must be unambiguous even if the caller is careless, or we would be the one
smuggling: a header value holding CR or LF would start a new header (response splitting),
so every head is checked for exactly one CR and one LF per line before it leaves; header
names are checked against the token grammar (a small cache keeps that off the hot path).
Content-Length is added when the caller gave neither it nor Transfer-Encoding.

Simpler than the real thing: no automatic `Date`/`Server` here (the server adds them), and
no header-name canonicalisation: names go out exactly as given.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from minisys.http.head import TOKEN_RE, Headers

REASONS: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
REASONS[413] = "Content Too Large"  # RFC 9110's new name for "Payload Too Large"
REASONS[422] = "Unprocessable Content"

# Distinct header names remembered as valid; real traffic uses a few dozen.
MAX_NAME_CACHE = 1024
# What add_fields must notice about a name, cached with the name once it is known valid:
# one dict lookup per field instead of a validity check, a lower() and two comparisons.
_PLAIN, _FRAMING, _CONNECTION = 0, 1, 2
_name_kinds: dict[str, int] = {}

HeaderList = Iterable[tuple[str, str]] | Headers


def reason_phrase(status: int) -> str:
    return REASONS.get(status, "Unknown")


def _name_kind(name: str) -> int:
    """Validate a header name (ValueError if it is no token) and say what kind it is."""
    kind = _name_kinds.get(name)
    if kind is not None:
        return kind
    if not name.isascii() or TOKEN_RE.fullmatch(name.encode("ascii")) is None:
        raise ValueError(f"invalid header name {name!r}")
    lname = name.lower()
    if lname == "content-length" or lname == "transfer-encoding":
        kind = _FRAMING
    elif lname == "connection":
        kind = _CONNECTION
    else:
        kind = _PLAIN
    if len(_name_kinds) < MAX_NAME_CACHE:
        _name_kinds[name] = kind
    return kind


def encode_head(parts: list[str], lines: int) -> bytes:
    """Join and encode a head, refusing CR/LF/NUL smuggled inside names or values."""
    text = "".join(parts)
    if text.count("\n") != lines or text.count("\r") != lines or "\x00" in text:
        raise ValueError("CR, LF or NUL inside a header field")
    return text.encode("latin-1")


def add_fields(parts: list[str], headers: HeaderList) -> tuple[int, bool, bool]:
    """Append field lines; return (count, body length already framed, `Connection: close`)."""
    count = 0
    framed = False
    close = False
    kinds = _name_kinds
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            kind = _name_kind(name)
        if kind:
            if kind == _FRAMING:
                framed = True
            elif "close" in value.lower():
                close = True
        parts += (name, ": ", value, "\r\n")
        count += 1
    return count, framed, close


def response_head(
    status: int,
    headers: HeaderList,
    *,
    reason: str | None = None,
    content_length: int | None = None,
    version: str = "1.1",
) -> bytes:
    """The status line and fields; adds Content-Length if given and not already framed."""
    if not 100 <= status <= 999:
        raise ValueError(f"invalid status {status}")
    parts = [f"HTTP/{version} {status} {reason or reason_phrase(status)}\r\n"]
    count, framed, _ = add_fields(parts, headers)
    if content_length is not None and not framed and status >= 200 and status != 204:
        parts.append(f"Content-Length: {content_length}\r\n")
        count += 1
    parts.append("\r\n")
    return encode_head(parts, count + 2)


def serialize_response(
    status: int,
    headers: HeaderList,
    body: bytes = b"",
    *,
    reason: str | None = None,
    send_body: bool = True,
) -> bytes:
    """A whole response. `send_body=False` for HEAD: same head, no body bytes.

    1xx, 204 and 304 never carry a body (RFC 9110 §6.4.1), whatever `body` holds.
    """
    no_body = status < 200 or status == 204 or status == 304
    head = response_head(
        status, headers, reason=reason, content_length=None if no_body else len(body)
    )
    if no_body or not send_body or not body:
        return head
    return head + body


_valid_methods: set[str] = set()


def request_head(
    method: str, target: str, headers: HeaderList, *, content_length: int | None = None
) -> bytes:
    """The request line and fields, adding Content-Length if given and not framed."""
    if method not in _valid_methods:
        if not method.isascii() or TOKEN_RE.fullmatch(method.encode("ascii")) is None:
            raise ValueError(f"invalid method {method!r}")
        if len(_valid_methods) < MAX_NAME_CACHE:
            _valid_methods.add(method)
    if not target or not target.isascii() or not target.isprintable() or " " in target:
        raise ValueError(f"invalid request target {target!r}")
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    count, framed, _ = add_fields(parts, headers)
    if content_length is not None and not framed:
        parts.append(f"Content-Length: {content_length}\r\n")
        count += 1
    parts.append("\r\n")
    return encode_head(parts, count + 2)


# Methods whose requests carry a body by convention, so an empty one is stated as length 0.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def serialize_request(method: str, target: str, headers: HeaderList, body: bytes = b"") -> bytes:
    """A whole request with a Content-Length body (Host must be among `headers`)."""
    length = len(body) if body or method in BODY_METHODS else None
    return request_head(method, target, headers, content_length=length) + body
