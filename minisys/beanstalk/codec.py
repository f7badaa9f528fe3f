"""beanstalkd's wire protocol as a pure byte-in, value-out state machine (both directions).

On the request's journey this is where a job's bytes become a job: the appserver's client
encodes `put <pri> <delay> <ttr> <bytes>\\r\\n<body>\\r\\n`, mq's server feeds the bytes it
reads into `CommandParser` and gets `Command`s (or a `Reject` carrying the error word to
send back), and the worker's client feeds mq's replies into `ReplyParser` and gets `Reply`s.
No sockets, no asyncio, no clock: tests feed bytes whole, one at a time, or split anywhere.

Framing (see doc/protocol.txt and mq/PROTOCOL.md):

    command line   ASCII, ends "\\r\\n", at most MAX_LINE bytes including the CRLF
    put body       exactly <bytes> bytes, then "\\r\\n" (not counted in <bytes>)
    reply line     e.g. "INSERTED 7\\r\\n"; RESERVED/FOUND/OK lines are followed by a
                   body of the announced size and "\\r\\n"

beanstalkd's quirks are kept on purpose, because clients and test suites depend on them:
command words are matched by prefix in beanstalkd's order (so `statsx` is BAD_FORMAT but
`frobnicate` is UNKNOWN_COMMAND); a put with a bad header is rejected *without* reading the
body (whose bytes are then parsed as a command); an over-size body is read and thrown away
before JOB_TOO_BIG; a body not followed by CRLF costs a job id (EXPECTED_CRLF); a line
longer than MAX_LINE is answered BAD_FORMAT and skipped up to the next CRLF.

Simpler than the real thing: beanstalkd parses in place in a fixed 224-byte buffer with
strtoul; we slice Python bytes, so the same quirks are reproduced by rule rather than by
construction (for example `kick` wraps a negative count the way strtoul does).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# beanstalkd's LINE_BUF_SIZE: the longest command, `pause-tube <200-byte name> <u32>`,
# plus CRLF fits; anything longer is a malformed line, not a reason to buffer more.
MAX_LINE = 224
# Tube names are 1..200 bytes (beanstalkd's MAX_TUBE_NAME_LEN - 1).
MAX_TUBE_NAME = 200
# beanstalkd's default job size limit (-z): 2**16 - 1 bytes.
DEFAULT_MAX_JOB_SIZE = 65_535
# A reply body we accept as a client (stats YAML, job bodies): beanstalkd allows -z up to
# 1 GiB, so a client must not assume less; anything larger is a broken server.
MAX_REPLY_BODY = 1 << 30

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1

TUBE_NAME = re.compile(rb"[A-Za-z0-9+/;.$_()][A-Za-z0-9\-+/;.$_()]{0,199}")

# Replies that carry no data, as the exact bytes beanstalkd sends.
BAD_FORMAT = b"BAD_FORMAT\r\n"
UNKNOWN_COMMAND = b"UNKNOWN_COMMAND\r\n"
EXPECTED_CRLF = b"EXPECTED_CRLF\r\n"
JOB_TOO_BIG = b"JOB_TOO_BIG\r\n"
DRAINING = b"DRAINING\r\n"
OUT_OF_MEMORY = b"OUT_OF_MEMORY\r\n"
INTERNAL_ERROR = b"INTERNAL_ERROR\r\n"
NOT_FOUND = b"NOT_FOUND\r\n"
NOT_IGNORED = b"NOT_IGNORED\r\n"
DEADLINE_SOON = b"DEADLINE_SOON\r\n"
TIMED_OUT = b"TIMED_OUT\r\n"
DELETED = b"DELETED\r\n"
RELEASED = b"RELEASED\r\n"
BURIED = b"BURIED\r\n"
TOUCHED = b"TOUCHED\r\n"
KICKED = b"KICKED\r\n"
PAUSED = b"PAUSED\r\n"


class Command(NamedTuple):
    """One well-formed request: its name, its parsed arguments, the body of a put."""

    name: str
    args: tuple = ()
    body: bytes | None = None


class Reject(NamedTuple):
    """A request that gets an error word instead of running.

    `burns_id` is True for EXPECTED_CRLF: beanstalkd allocated the job (and its id) before
    it saw the missing CRLF, so the next put's id skips one. Servers mirror that.
    """

    reply: bytes
    burns_id: bool = False


class _Bad(Exception):
    """Internal: the line is malformed (BAD_FORMAT)."""


def _uint(buf: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Read an unsigned decimal after optional spaces, like beanstalkd's read_u32/u64."""
    n = len(buf)
    while pos < n and buf[pos] == 32:
        pos += 1
    start = pos
    while pos < n and 48 <= buf[pos] <= 57:
        pos += 1
    if pos == start:
        raise _Bad
    value = int(buf[start:pos])
    if value > limit:
        raise _Bad
    return value, pos


def _last_uint(buf: bytes, pos: int, limit: int) -> int:
    value, end = _uint(buf, pos, limit)
    if end != len(buf):
        raise _Bad
    return value


def _tube(rest: bytes) -> str:
    if TUBE_NAME.fullmatch(rest) is None:
        raise _Bad
    return rest.decode("ascii")


def _kick_count(rest: bytes) -> int:
    # beanstalkd uses strtoul here with no trailing-garbage check: leading whitespace, an
    # optional sign, digits; a negative number wraps around, and the result is cut to u32.
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)", rest)
    if m is None:
        raise _Bad
    value = int(m.group(2))
    if value > U64_MAX:
        raise _Bad
    if m.group(1) == b"-":
        value = (U64_MAX + 1 - value) & U64_MAX
    return value & U32_MAX


def _id_arg(rest: bytes) -> tuple:
    # Fast path for the usual `delete 42`: plain digits need no scan byte by byte.
    if rest.isdigit():
        value = int(rest)
        if value > U64_MAX:
            raise _Bad
        return (value,)
    return (_last_uint(rest, 0, U64_MAX),)


def _tube_arg(rest: bytes) -> tuple:
    return (_tube(rest),)


def _release_args(rest: bytes) -> tuple:
    job_id, pos = _uint(rest, 0, U64_MAX)
    pri, pos = _uint(rest, pos, U32_MAX)
    return job_id, pri, _last_uint(rest, pos, U32_MAX)


def _bury_args(rest: bytes) -> tuple:
    job_id, pos = _uint(rest, 0, U64_MAX)
    return job_id, _last_uint(rest, pos, U32_MAX)


def _pause_args(rest: bytes) -> tuple:
    i = 0
    while i < len(rest) and rest[i] == 32:
        i += 1
    end = rest.find(b" ", i)
    if end < 0:
        raise _Bad
    return _tube(rest[i:end]), _last_uint(rest, end, U32_MAX)


# Builds a NamedTuple in C, skipping its Python-level __new__ (0.5 instead of 1.1 µs).
_new = tuple.__new__
# The usual, well-formed put line. At most 20 digits per number keeps a match shorter
# than MAX_LINE; anything else takes the general path (_put_header).
_PUT_LINE = re.compile(rb"put ([0-9]{1,20}) ([0-9]{1,20}) ([0-9]{1,20}) ([0-9]{1,20})\r\n")

# Commands that take arguments, keyed by their word; the parser gets what follows "word ".
_WITH_ARGS = {
    b"peek": ("peek", _id_arg),
    b"reserve-with-timeout": ("reserve-with-timeout", lambda r: (_last_uint(r, 0, U32_MAX),)),
    b"reserve-job": ("reserve-job", _id_arg),
    b"delete": ("delete", _id_arg),
    b"release": ("release", _release_args),
    b"bury": ("bury", _bury_args),
    b"kick": ("kick", lambda r: (_kick_count(r),)),
    b"kick-job": ("kick-job", _id_arg),
    b"touch": ("touch", _id_arg),
    b"stats-job": ("stats-job", _id_arg),
    b"stats-tube": ("stats-tube", _tube_arg),
    b"use": ("use", _tube_arg),
    b"watch": ("watch", _tube_arg),
    b"ignore": ("ignore", _tube_arg),
    b"pause-tube": ("pause-tube", _pause_args),
}
# Commands without arguments: their Command is the same every time, so it is built once.
_NO_ARGS = {
    word: Command(word.decode())
    for word in (
        b"reserve", b"peek-ready", b"peek-delayed", b"peek-buried", b"stats",
        b"list-tubes", b"list-tube-used", b"list-tubes-watched", b"quit",
    )
}  # fmt: skip
# Fast paths for the commonest lines (each gives what parse_line would; measured with
# callgrind per put/reserve/delete job, in-process): an argument-less command that is all
# that is left of a packet is one dict lookup on the packet itself (~4k instructions less
# per reserve); `<word> <id>` is one regex match (~4k less per delete).
_NO_ARGS_PACKETS = {word + b"\r\n": command for word, command in _NO_ARGS.items()}
_SHORTEST_NO_ARGS, _LONGEST_NO_ARGS = 6, 20  # b"quit\r\n" .. b"list-tubes-watched\r\n"
_ID_LINE = re.compile(rb"([a-z-]{4,11}) ([0-9]{1,20})\r\n")
_ID_COMMANDS = {word: name for word, (name, parse) in _WITH_ARGS.items() if parse is _id_arg}

# beanstalkd's which_cmd(): the first prefix that matches wins. Used only when the fast
# exact lookup failed, to decide between BAD_FORMAT (a known word, used wrongly) and
# UNKNOWN_COMMAND. Entries ending in a space take arguments (already tried exactly).
_PREFIX_ORDER = (
    b"put ", b"peek ", b"peek-ready", b"peek-delayed", b"peek-buried",
    b"reserve-with-timeout ", b"reserve-job ", b"reserve", b"delete ", b"release ",
    b"bury ", b"kick ", b"kick-job ", b"touch ", b"stats-job ", b"stats-tube ", b"stats",
    b"use ", b"watch ", b"ignore ", b"list-tubes-watched", b"list-tube-used",
    b"list-tubes", b"quit", b"pause-tube ",
)  # fmt: skip


def parse_line(line: bytes) -> Command | Reject:
    """Parse one command line (without CRLF) other than put."""
    sp = line.find(b" ")
    if sp < 0:
        command = _NO_ARGS.get(line)
        if command is not None:
            return command
    else:
        entry = _WITH_ARGS.get(line[:sp])
        if entry is not None:
            try:
                return _new(Command, (entry[0], entry[1](line[sp + 1 :]), None))
            except _Bad:
                return Reject(BAD_FORMAT)
    for prefix in _PREFIX_ORDER:
        if line.startswith(prefix):
            # `quit` is the one argument-less command beanstalkd does not length-check.
            return Command("quit") if prefix == b"quit" else Reject(BAD_FORMAT)
    return Reject(UNKNOWN_COMMAND)


def _put_header(rest: bytes, max_job_size: int) -> tuple[int, int, int, int] | Reject | int:
    """Parse `<pri> <delay> <ttr> <bytes>`; an int result means "skip that many bytes"."""
    parts = rest.split(b" ")
    # The usual, well-formed header first: four runs of digits need no scan byte by byte.
    if len(parts) == 4 and rest.replace(b" ", b"").isdigit() and b"" not in parts:
        pri, delay, ttr, size = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
        if pri > U32_MAX or delay > U32_MAX or ttr > U32_MAX or size > U32_MAX:
            return Reject(BAD_FORMAT)
        if size > max_job_size:
            return size + 2
        return pri, delay, ttr, size
    try:
        pri, pos = _uint(rest, 0, U32_MAX)
        delay, pos = _uint(rest, pos, U32_MAX)
        ttr, pos = _uint(rest, pos, U32_MAX)
        size, pos = _uint(rest, pos, U32_MAX)
    except _Bad:
        return Reject(BAD_FORMAT)
    # beanstalkd checks the size before it looks for trailing garbage.
    if size > max_job_size:
        return size + 2
    if pos != len(rest):
        return Reject(BAD_FORMAT)
    return pri, delay, ttr, size


class CommandParser:
    """Server side: feed bytes, take `Command`s and `Reject`s in order.

    States: reading a line; reading a put body (header parsed); skipping an over-size body
    (then JOB_TOO_BIG); discarding the rest of an over-long line (BAD_FORMAT already given).

    Where the bytes live: the packet just fed is parsed where it lies (`data` from `pos`;
    slicing bytes copies only what a command keeps). Only a command cut by the end of a
    packet moves its start into `more`, where the rest of it is appended as it arrives; a
    put body is taken out of `more` once it is whole, so a large body arriving in many
    packets is copied in linear time. Against a bytearray that every packet is appended to
    and cut from, this saves a copy per packet and per line (callgrind, per
    put/reserve/delete job: see mq/README.md).
    """

    def __init__(self, max_job_size: int = DEFAULT_MAX_JOB_SIZE) -> None:
        self.max_job_size = max_job_size
        # Read-only for callers. Unparsed bytes are `data[pos:]` or `more` (never both),
        # so a server may test `pos < len(data) or more` instead of making a call to
        # next_command() that could only return None (~850 instructions per packet).
        self.data = b""  # the packet being parsed ...
        self.pos = 0  # ... from here on
        self.more = bytearray()  # or: the start of a command still arriving
        self._put: tuple[int, int, int, int] | None = None
        self._skip = 0
        self._discarding = False

    def feed(self, data: bytes) -> None:
        if self.pos < len(self.data):
            # Unparsed bytes are still here (a server stops parsing while a reserve
            # waits): they go first, so everything unparsed now lives in `more`.
            self.more += memoryview(self.data)[self.pos :]
            self.data, self.pos = b"", 0
        if self.more:
            self.more += data
        else:
            self.data, self.pos = data, 0

    @property
    def in_body(self) -> bool:
        """A put header was accepted and its body is still arriving."""
        return self._put is not None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed (for the server's input bound)."""
        return len(self.data) - self.pos + len(self.more)

    def next_command(self) -> Command | Reject | None:
        """The next complete request, or None when more bytes are needed."""
        if self.more:
            put = self._put
            if put is not None and len(self.more) < put[3] + 2:
                return None  # a body still arriving: no copy until it is whole
            self.data, self.pos = bytes(self.more), 0
            self.more.clear()
        data, pos = self.data, self.pos
        end_data = len(data)
        while pos < end_data:  # every state needs at least one more byte
            put = self._put
            if put is not None:
                stop = pos + put[3]
                if stop + 2 > end_data:
                    break
                self._put = None
                self.pos = stop + 2
                if not data.startswith(b"\r\n", stop):
                    return Reject(EXPECTED_CRLF, burns_id=True)
                return _new(Command, ("put", put[:3], data[pos:stop]))
            if self._skip:
                take = min(self._skip, end_data - pos)
                pos += take
                self._skip -= take
                if self._skip:
                    break
                self.pos = pos
                return Reject(JOB_TOO_BIG)
            if self._discarding:
                end = data.find(b"\r\n", pos)
                if end < 0:
                    pos = max(pos, end_data - 1)  # a trailing CR's LF may come next
                    break
                pos = end + 2
                self._discarding = False
                continue
            left = end_data - pos
            if _SHORTEST_NO_ARGS <= left <= _LONGEST_NO_ARGS:
                command = _NO_ARGS_PACKETS.get(data[pos:] if pos else data)
                if command is not None:
                    self.pos = end_data
                    return command
            first = data[pos]
            if first != 112:  # not "p"
                m = _ID_LINE.match(data, pos)
                if m is not None:
                    name = _ID_COMMANDS.get(m[1])
                    if name is not None:
                        value = int(m[2])
                        if value <= U64_MAX:
                            self.pos = m.end()
                            return _new(Command, (name, (value,), None))
            # The usual put header, matched and split in one C call (the slow path below
            # gives the same answer; this only saves steps). Only lines starting with "p"
            # try it: a failed match costs as much as a good one (~2.9k instructions).
            m = _PUT_LINE.match(data, pos) if first == 112 else None  # 112: "p"
            if m is not None:
                pri, delay, ttr, size = m.groups()
                pri, delay, ttr, size = int(pri), int(delay), int(ttr), int(size)
                pos = m.end()
                if pri > U32_MAX or delay > U32_MAX or ttr > U32_MAX or size > U32_MAX:
                    self.pos = pos
                    return Reject(BAD_FORMAT)
                if size > self.max_job_size:
                    self._skip = size + 2
                    continue
                stop = pos + size
                if stop + 2 <= end_data and data[stop : stop + 2] == b"\r\n":
                    # The whole put is here (the usual case): no trip through _put.
                    self.pos = stop + 2
                    return _new(Command, ("put", (pri, delay, ttr), data[pos:stop]))
                self._put = (pri, delay, ttr, size)
                continue
            end = data.find(b"\r\n", pos, pos + MAX_LINE)
            if end < 0:
                if end_data - pos >= MAX_LINE:
                    self.pos = pos + MAX_LINE
                    self._discarding = True
                    return Reject(BAD_FORMAT)
                break
            line = data[pos:end]
            pos = end + 2
            if first != 112 or not line.startswith(b"put "):
                self.pos = pos
                return parse_line(line)
            header = _put_header(line[4:], self.max_job_size)
            if type(header) is tuple:
                self._put = header
            elif type(header) is int:
                self._skip = header
            else:
                self.pos = pos
                return header
        # Out of bytes mid-command: keep what is left for the next packet.
        if pos < end_data:
            self.more += memoryview(data)[pos:]
        self.data, self.pos = b"", 0
        return None


class Reply(NamedTuple):
    """One server reply: its word, the other tokens of the line, and a body if it has one."""

    word: str
    args: tuple[bytes, ...] = ()
    body: bytes | None = None


class ReplyError(Exception):
    """The server sent something that is not beanstalkd's protocol."""


# Reply words followed by a body, and which token of the line holds the body's size.
_BODY_SIZE_TOKEN = {b"RESERVED": 2, b"FOUND": 2, b"OK": 1}
# A reply line longer than this is garbage (the longest real one is `USING <200 bytes>`).
MAX_REPLY_LINE = 512


class ReplyParser:
    """Client side: feed bytes, take `Reply`s in order."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: tuple[bytes, tuple[bytes, ...], int] | None = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_reply(self) -> Reply | None:
        buf = self._buf
        if self._head is None:
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_REPLY_LINE:
                    raise ReplyError(f"reply line longer than {MAX_REPLY_LINE} bytes")
                return None
            tokens = bytes(buf[:end]).split(b" ")
            del buf[: end + 2]
            word, args = tokens[0], tuple(tokens[1:])
            where = _BODY_SIZE_TOKEN.get(word)
            if where is None:
                return Reply(word.decode("ascii", "replace"), args)
            try:
                size = int(tokens[where])
            except (IndexError, ValueError):
                raise ReplyError(f"bad {word!r} reply: {tokens!r}") from None
            if not 0 <= size <= MAX_REPLY_BODY:
                raise ReplyError(f"reply body of {size} bytes")
            self._head = (word, args, size)
        word, args, size = self._head
        if len(buf) < size + 2:
            return None
        body = bytes(buf[:size])
        if buf[size : size + 2] != b"\r\n":
            raise ReplyError("reply body not followed by CRLF")
        del buf[: size + 2]
        self._head = None
        return Reply(word.decode("ascii"), args, body)


def encode_put(pri: int, delay: int, ttr: int, body: bytes) -> bytes:
    """The bytes of a put request."""
    return b"put %d %d %d %d\r\n%b\r\n" % (pri, delay, ttr, len(body), body)


def encode_command(name: str, *args: object) -> bytes:
    """The bytes of any other request, e.g. encode_command("release", 7, 1024, 0)."""
    if args:
        return f"{name} {' '.join(str(a) for a in args)}\r\n".encode("ascii")
    return f"{name}\r\n".encode("ascii")


def encode_data_reply(word: bytes, head: bytes, body: bytes) -> bytes:
    """`RESERVED <id> <n>`, `FOUND <id> <n>` or `OK <n>` followed by the body."""
    if head:
        return b"%b %b %d\r\n%b\r\n" % (word, head, len(body), body)
    return b"%b %d\r\n%b\r\n" % (word, len(body), body)


def parse_yaml(body: bytes) -> dict[str, str] | list[str]:
    """Parse beanstalkd's tiny YAML (a flat dict or a list of names) into strings."""
    lines = body.decode("utf-8", "replace").splitlines()
    if lines and lines[0] == "---":
        lines = lines[1:]
    if lines and lines[0].startswith("- "):
        return [line[2:] for line in lines if line.startswith("- ")]
    out: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep:
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out[key] = value
    return out
