"""Message heads: the request line or status line plus the header fields.

On the request's journey this is the first thing that looks at an HTTP byte: the gateway and
the appserver both hand every head they receive to `parse_request_head`, and every client
(the gateway's proxy, the load generator) hands response heads to `parse_response_head`.
It owns the grammar of RFC 9112 §3-§5 (request line, status line, field lines), the
`Headers` container, the `Limits` that bound a head, and `HttpError`, the one exception a
peer's bytes can cause. It does not decide how long a body is (see `framing.py`) and never
touches a socket (see `codec.py` for the incremental parser that finds where a head ends).

Why regexes on bytes: Python's `int()` accepts `+5`, `1_0`, ` 5 ` and Arabic-Indic digits,
`bytes.strip()` strips more than SP/HTAB, and `str.isdigit()` is true for `²`. Each of these
leniencies was a request-smuggling CVE somewhere. Every number and token here is checked by
an ASCII-only pattern on the raw bytes before anything converts it.

Simpler than the real thing: nginx also validates the Host value's characters, normalises
the target (`/a/../b`), and can be told to ignore invalid header names instead of refusing
them. We refuse, and leave the target exactly as sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# --- bounds ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound a peer's bytes can push against, with the status it earns."""

    # 414 above this; RFC 9110 asks for at least 8000 octets, nginx's buffer is 8 KiB.
    max_request_line: int = 8192
    # 431 above this; the whole field section (HAProxy's default buffer is 16 KiB).
    max_header_bytes: int = 16384
    # 431 above this many field lines; real clients send 5-30.
    max_header_count: int = 100
    # 413 above this; nginx's client_max_body_size default is 1 MiB.
    max_body: int = 1024 * 1024
    # 400 above this; a chunk line is a hex size plus extensions nobody uses.
    max_chunk_line: int = 1024


DEFAULT_LIMITS = Limits()


class HttpError(Exception):
    """The peer broke the protocol or a limit. `status` is what a server answers with.

    After any HttpError from a parser the byte stream can no longer be trusted (we do not
    know where the next message starts), so the connection must be closed.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


# --- the grammar, as ASCII-only byte patterns ----------------------------------------------

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# field-value: visible chars and obs-text, single SP/HTAB allowed inside, never CR LF NUL.
FIELD_VCHAR = rb"[\x21-\x7e\x80-\xff]"
FIELD_LINE_RE = re.compile(
    rb"(" + TOKEN + rb"):[ \t]*((?:" + FIELD_VCHAR + rb"(?:[\x20-\x7e\x80-\xff\t]*"
    rb"" + FIELD_VCHAR + rb")?)?)[ \t]*"
)
# nginx only accepts upper-case letters, '_' and '-' in a method; `get` is a 400.
REQUEST_LINE_RE = re.compile(rb"([A-Z_\-]+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
# Looser shape used only to tell a bad version (505) from a bad line (400).
VERSION_ONLY_RE = re.compile(rb"[A-Z_\-]+ [\x21-\x7e]+ HTTP/([0-9])\.[0-9]")
STATUS_LINE_RE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
TOKEN_RE = re.compile(TOKEN)
CONTENT_LENGTH_RE = re.compile(rb"[0-9]{1,19}")


class Headers:
    """Case-insensitive, ordered, multi-valued header fields (names and values are str).

    Stored as the list of (name, value) pairs as they came, plus a lowercase index built on
    first lookup, so parsing stays cheap for the many heads nobody inspects twice.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = list(items) if items is not None else []
        self._index: dict[str, list[str]] | None = None

    @classmethod
    def adopt(cls, items: list[tuple[str, str]]) -> Headers:
        """A Headers that takes ownership of `items` without copying (the parser's path)."""
        headers = cls.__new__(cls)
        headers._items = items
        headers._index = None
        return headers

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._items:
                index.setdefault(name.lower(), []).append(value)
            self._index = index
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name`, or `default`."""
        values = self._lookup().get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._lookup().get(name.lower(), ()))

    def __getitem__(self, name: str) -> str:
        values = self._lookup().get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))
        self._index = None

    def set(self, name: str, value: str) -> None:
        """Replace every `name` field by one with `value`."""
        self.remove(name)
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        lower = name.lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != lower]
        self._index = None

    def copy(self) -> Headers:
        return Headers(self._items)


def split_lines(head: bytes) -> list[bytes]:
    """Split a head into lines, accepting a bare LF as a line end like nginx (RFC 9112 §2.2).

    A bare CR is not a line end: it stays inside the line, where the field grammar refuses it.
    """
    lines = head.split(b"\r\n")
    if len(lines) - 1 != head.count(b"\n"):
        lines = [line[:-1] if line[-1:] == b"\r" else line for line in head.split(b"\n")]
    return lines


# Fields that shape framing or the connection; `parse_fields` collects them in its one pass.
FRAMING_NAMES = frozenset(
    {b"content-length", b"transfer-encoding", b"host", b"connection", b"expect"}
)


# Every byte a field line may hold (HTAB, SP, visible ASCII, obs-text): a line whose bytes
# are all here, with a known token before its first colon, is a valid field line.
FIELD_BYTES = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
# A translate table marking those bytes 1 and every other byte 0: `0 in line.translate()`
# finds a forbidden byte in two C loops. (`translate(None, FIELD_BYTES)`, deleting them,
# builds its table on every call: ~2.4k instructions a line against ~0.8k.)
_MARK_ALLOWED = bytes(1 if b in FIELD_BYTES else 0 for b in range(256))
# Field names already checked against the token grammar, with their str form and, for the
# FRAMING_NAMES, their lowercase form; real traffic uses a few dozen names.
MAX_KNOWN_NAMES = 1024
_known_names: dict[bytes, tuple[str, bytes | None]] = {}


def parse_fields(
    lines: list[bytes], start: int, limits: Limits
) -> tuple[Headers, dict[bytes, list[bytes]]]:
    """Parse field lines `lines[start:]`, refusing bad ones, in a single pass.

    Returns the decoded `Headers` and the raw values of the FRAMING_NAMES fields by
    lowercase name, which is all `framing.py` needs to look at.

    The usual line takes the short way: its name is one seen before and every byte is
    allowed (one `translate` and one `in`, in C), so stripping SP/HTAB gives exactly what
    FIELD_LINE_RE would capture. Callgrind, parsing wrk's request and nginx's 5-field
    response: 142k -> 122k instructions (with comma_tokens' one-token shortcut). Any other line
    goes through the regex, which also names what is wrong.
    """
    if len(lines) - start > limits.max_header_count:
        raise HttpError(431, "too many header fields")
    items = []
    found: dict[bytes, list[bytes]] = {}
    known = _known_names
    for i in range(start, len(lines)):
        line = lines[i]
        raw_name, colon, value = line.partition(b":")
        name_kinds = known.get(raw_name)
        if name_kinds is not None and colon and 0 not in line.translate(_MARK_ALLOWED):
            name, lname = name_kinds
            value = value.strip(b" \t")
        else:
            name, lname, value = _field_line(line)
        items.append((name, value.decode("latin-1")))
        if lname is not None:
            if lname in found:
                found[lname].append(value)
            else:
                found[lname] = [value]
    return Headers.adopt(items), found


def _field_line(line: bytes) -> tuple[str, bytes | None, bytes]:
    """One field line through the grammar: (name, lowercase name if framing, raw value)."""
    m = FIELD_LINE_RE.fullmatch(line)
    if m is None:
        raise HttpError(400, diagnose_field_line(line))
    raw_name, value = m.groups()
    lname = raw_name.lower()
    kinds = (raw_name.decode("latin-1"), lname if lname in FRAMING_NAMES else None)
    if len(_known_names) < MAX_KNOWN_NAMES:
        _known_names[raw_name] = kinds
    return kinds[0], kinds[1], value


def diagnose_field_line(line: bytes) -> str:
    """Name what is wrong with a field line the grammar refused (only on the error path)."""
    if line[:1] in (b" ", b"\t"):
        return "obsolete line folding is not accepted"
    name, colon, value = line.partition(b":")
    if not colon:
        return "header line without a colon"
    if name[-1:] in (b" ", b"\t"):
        return "whitespace between header name and colon"
    if not TOKEN_RE.fullmatch(name):
        return "invalid character in header name"
    if b"\x00" in value:
        return "NUL in header value"
    if b"\r" in value:
        return "bare CR in header value"
    return "invalid character in header value"


def parse_request_line(line: bytes, limits: Limits) -> tuple[str, str, str]:
    """`GET /x HTTP/1.1` → ("GET", "/x", "1.1"); 414, 505 or 400 otherwise."""
    if len(line) > limits.max_request_line:
        raise HttpError(414, "request line too long")
    m = REQUEST_LINE_RE.fullmatch(line)
    if m is None:
        v = VERSION_ONLY_RE.fullmatch(line)
        if v is not None and v.group(1) != b"1":
            raise HttpError(505, "HTTP version not supported")
        raise HttpError(400, "malformed request line")
    method, target, major, minor = m.groups()
    if major != b"1":
        raise HttpError(505, "HTTP version not supported")
    # origin-form `/path`, absolute-form `http://host/path`, `*` (OPTIONS), or for CONNECT
    # authority-form `host:port` (RFC 9112 §3.2). Anything else is a 400, as in nginx.
    if target[:1] != b"/" and target != b"*" and b"://" not in target and method != b"CONNECT":
        raise HttpError(400, "invalid request target")
    return method.decode("ascii"), target.decode("ascii"), "1.1" if minor != b"0" else "1.0"


def parse_status_line(line: bytes) -> tuple[str, int, str]:
    """`HTTP/1.1 200 OK` → ("1.1", 200, "OK")."""
    m = STATUS_LINE_RE.fullmatch(line)
    if m is None or m.group(1) != b"1":
        raise HttpError(502, "malformed status line")
    version = "1.0" if m.group(2) == b"0" else "1.1"
    reason = (m.group(4) or b"").decode("latin-1")
    return version, int(m.group(3)), reason


# Single-token values seen on nearly every message, already in comma_tokens' output form.
_ONE_TOKEN = {
    b"keep-alive": b"keep-alive",
    b"Keep-Alive": b"keep-alive",
    b"close": b"close",
    b"Close": b"close",
    b"chunked": b"chunked",
}


def comma_tokens(values: list[bytes]) -> list[bytes]:
    """`Connection: keep-alive, Upgrade` style lists, lowercased, empty elements dropped."""
    if len(values) == 1 and values[0] in _ONE_TOKEN:  # what nearly every peer sends
        return [_ONE_TOKEN[values[0]]]
    out = []
    for value in values:
        for part in value.split(b","):
            part = part.strip(b" \t")
            if part:
                out.append(part.lower())
    return out
