"""Parse one RESP2/RESP3 reply value out of a buffer (the client side of `codec.py`).

On the request's journey this is where an appserver's or gateway's `RespClient` turns a
kvcache/minidb answer back into Python values (see `values.py` for the mapping). Every
type is one line of header, so the parser is a table from the first byte to a small
function; aggregates recurse with a depth bound so garbage like `*1 *1 *1 …` cannot blow
the Python stack.

An incomplete reply is simply parsed again from its start once more bytes arrived —
replies in this project are small. The one big case, a large bulk, reports how many bytes
it needs so `RespParser.feed` can wait for them without re-parsing.

Simpler than the real thing: hiredis keeps a resumable stack of half-built aggregates;
we re-parse. Streamed strings and aggregates (`$?`, `*?`), which Redis never sends, are
accepted.
"""

from __future__ import annotations

import re

from minisys.resp.values import ProtocolError, Push, RespError, SimpleString, Verbatim

# Nesting deeper than this is garbage, not data (Redis never nests more than a few).
MAX_DEPTH = 64
# Largest aggregate a client accepts (Redis's own multibulk bound, INT_MAX).
MAX_AGGREGATE = 2**31 - 1

INCOMPLETE = type("Incomplete", (), {"__repr__": lambda self: "INCOMPLETE"})()

_DOUBLE = re.compile(rb"[-+]?(?:inf|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


class _Incomplete(Exception):
    """Raised inside the recursion when the buffer ends too early."""

    def __init__(self, need: int = 0) -> None:
        self.need = need


def parse_reply(buf: bytes, pos: int, max_bulk: int) -> tuple[object, int, dict | None, int]:
    """Return (value, new_pos, attributes, 0) or (INCOMPLETE, pos, None, bytes_needed)."""
    parser = _ReplyParser(buf, max_bulk)
    try:
        value, new_pos = parser.value(pos, 0)
    except _Incomplete as e:
        return INCOMPLETE, pos, None, (e.need - pos if e.need else 0)
    except RecursionError:
        raise ProtocolError("Protocol error: reply nested too deep") from None
    return value, new_pos, parser.attributes, 0


def _int(s: bytes) -> int:
    if s.isdigit() or (s[:1] == b"-" and s[1:].isdigit()):
        return int(s)
    raise ProtocolError(f"Protocol error: invalid integer {s[:40]!r}")


def _hashable(value: object) -> object:
    """Map keys and set members must be hashable; nested aggregates become tuples."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return frozenset((k, _hashable(v)) for k, v in value.items())
    if isinstance(value, set):
        return frozenset(value)
    return value


class _ReplyParser:
    def __init__(self, buf: bytes, max_bulk: int) -> None:
        self.buf = buf
        self.max_bulk = max_bulk
        self.attributes: dict | None = None

    def line(self, pos: int) -> tuple[bytes, int]:
        nl = self.buf.find(b"\r\n", pos)
        if nl < 0:
            raise _Incomplete
        return self.buf[pos:nl], nl + 2

    def blob(self, length: bytes, pos: int) -> tuple[bytes, int]:
        n = _int(length)
        if n < 0 or n > self.max_bulk:
            raise ProtocolError("Protocol error: invalid bulk length")
        stop = pos + n
        if stop + 2 > len(self.buf):
            raise _Incomplete(stop + 2)
        if self.buf[stop : stop + 2] != b"\r\n":
            raise ProtocolError("Protocol error: bulk not followed by CRLF")
        return self.buf[pos:stop], stop + 2

    def count(self, s: bytes) -> int:
        n = _int(s)
        if n > MAX_AGGREGATE:
            raise ProtocolError("Protocol error: invalid multibulk length")
        return n

    def value(self, pos: int, depth: int) -> tuple[object, int]:
        if depth > MAX_DEPTH:
            raise ProtocolError("Protocol error: reply nested too deep")
        if pos >= len(self.buf):
            raise _Incomplete
        kind = self.buf[pos : pos + 1]
        head, pos = self.line(pos + 1)
        if kind == b"$":
            if head == b"-1":
                return None, pos
            if head == b"?":
                return self.streamed_string(pos)
            return self.blob(head, pos)
        if kind == b":":
            return _int(head), pos
        if kind == b"+":
            return SimpleString(head.decode("utf-8", "surrogateescape")), pos
        if kind == b"-":
            return RespError(head.decode("utf-8", "surrogateescape")), pos
        if kind in b"*~>%|" and len(kind) == 1:
            return self.aggregate(kind, head, pos, depth)
        return self.scalar3(kind, head, pos)

    def scalar3(self, kind: bytes, head: bytes, pos: int) -> tuple[object, int]:
        if kind == b"_":
            if head:
                raise ProtocolError("Protocol error: invalid null")
            return None, pos
        if kind == b"#":
            if head == b"t":
                return True, pos
            if head == b"f":
                return False, pos
            raise ProtocolError("Protocol error: invalid boolean")
        if kind == b",":
            if _DOUBLE.fullmatch(head) is None:
                raise ProtocolError("Protocol error: invalid double")
            return float(head), pos
        if kind == b"(":
            return _int(head), pos
        if kind == b"!":
            data, pos = self.blob(head, pos)
            return RespError(data.decode("utf-8", "surrogateescape")), pos
        if kind == b"=":
            data, pos = self.blob(head, pos)
            if len(data) < 4 or data[3:4] != b":":
                raise ProtocolError("Protocol error: invalid verbatim string")
            return Verbatim(data[:3], data[4:]), pos
        raise ProtocolError(f"Protocol error: unknown reply type {kind!r}")

    def streamed_string(self, pos: int) -> tuple[bytes, int]:
        parts = []
        while True:
            if pos >= len(self.buf):
                raise _Incomplete
            if self.buf[pos : pos + 1] != b";":
                raise ProtocolError("Protocol error: expected ';' in streamed string")
            head, pos = self.line(pos + 1)
            if head == b"0":
                return b"".join(parts), pos
            part, pos = self.blob(head, pos)
            parts.append(part)

    def aggregate(self, kind: bytes, head: bytes, pos: int, depth: int) -> tuple[object, int]:
        streamed = head == b"?"
        n = -1 if streamed else self.count(head)
        if n < 0 and not streamed:
            if kind == b"*":
                return None, pos  # *-1, the RESP2 null array
            raise ProtocolError("Protocol error: invalid aggregate length")
        pairs = kind in b"%|"
        items: list = []
        want = n * 2 if pairs else n
        while streamed or len(items) < want:
            if streamed and self.buf[pos : pos + 3] == b".\r\n":
                pos += 3
                break
            if streamed and pos + 3 > len(self.buf):
                raise _Incomplete
            item, pos = self.value(pos, depth + 1)
            items.append(item)
        if kind == b"*":
            return items, pos
        if kind == b">":
            return Push(items), pos
        if kind == b"~":
            return {_hashable(v) for v in items}, pos
        if len(items) % 2:
            raise ProtocolError("Protocol error: map with an odd number of elements")
        mapping = {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}
        if kind == b"%":
            return mapping, pos
        # An attribute describes the value that follows it; keep it aside, return the value.
        self.attributes = mapping
        return self.value(pos, depth + 1)
