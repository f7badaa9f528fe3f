"""beanstalkd requests, server side: bytes in, `Command`s and `Reject`s out (sans-I/O).

On the request's journey: mq's server feeds every packet a client sends into a
`CommandParser` and runs the commands it gets back; the appserver's put and the worker's
reserve and delete arrive here first. The types and reply words are shared with the client
side and live in `codec.py`.

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

from minisys.beanstalk.codec import (
    BAD_FORMAT,
    DEFAULT_MAX_JOB_SIZE,
    EXPECTED_CRLF,
    JOB_TOO_BIG,
    MAX_LINE,
    TUBE_NAME,
    U32_MAX,
    U64_MAX,
    UNKNOWN_COMMAND,
    Command,
    Reject,
)


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

# Put header lines seen before (without CRLF) -> ((pri, delay, ttr), size). A client puts
# with the same priority, delay, TTR and often the same size again and again, so one
# bytes slice and a dict lookup replace the regex match and four int() calls
# (~1.2 -> ~0.4 us per put, timeit). Only lines _PUT_LINE matched and whose numbers are
# within bounds go in, so a hit gives what the regex path would.
_PUT_HEADERS: dict[bytes, tuple[tuple[int, int, int], int]] = {}
# Distinct put header lines remembered; past this the memo starts over (a client putting
# with ever-changing numbers costs a clear per this many puts, not unbounded memory).
PUT_HEADER_MEMO = 1024

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
            first = data[pos]
            if first == 112:  # "p": a put header seen before?
                end = data.find(b"\r\n", pos, pos + MAX_LINE)
                known = _PUT_HEADERS.get(data[pos:end]) if end > 0 else None
                if known is not None and known[1] <= self.max_job_size:
                    args, size = known
                    pos = end + 2
                    stop = pos + size
                    if data.startswith(b"\r\n", stop):  # the whole put is here
                        self.pos = stop + 2
                        return _new(Command, ("put", args, data[pos:stop]))
                    self._put = (*args, size)
                    continue
            elif first == 100 and data.startswith(b"delete ", pos):
                # A worker's `delete <id>`, the one id command on the hot path: two C
                # scans instead of _ID_LINE's regex (~1k instructions less per delete).
                end = data.find(b"\r\n", pos + 7, pos + 29)  # room for 20 digits
                digits = data[pos + 7 : end]
                if end > 0 and digits.isdigit():  # (ASCII digits only, for bytes)
                    value = int(digits)
                    if value <= U64_MAX:
                        self.pos = end + 2
                        return _new(Command, ("delete", (value,), None))
            left = end_data - pos
            if _SHORTEST_NO_ARGS <= left <= _LONGEST_NO_ARGS:
                command = _NO_ARGS_PACKETS.get(data[pos:] if pos else data)
                if command is not None:
                    self.pos = end_data
                    return command
            if first != 112:
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
                if len(_PUT_HEADERS) >= PUT_HEADER_MEMO:
                    _PUT_HEADERS.clear()
                _PUT_HEADERS[m[0][:-2]] = ((pri, delay, ttr), size)
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
