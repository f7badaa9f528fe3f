"""beanstalkd's wire protocol, the parts both sides share: reply words, request and reply
types, the client's reply parser and the encoders. Pure bytes in, values out.

On the request's journey this is where a job's bytes become a job: the appserver's client
encodes `put <pri> <delay> <ttr> <bytes>\\r\\n<body>\\r\\n`, mq's server parses requests
with `commands.CommandParser` (the server side, in its own file) into `Command`s (or a
`Reject` carrying the error word to send back), and the worker's client feeds mq's replies
into `ReplyParser` here and gets `Reply`s. No sockets, no asyncio, no clock: tests feed
bytes whole, one at a time, or split anywhere.

Framing (see doc/protocol.txt and mq/PROTOCOL.md):

    command line   ASCII, ends "\\r\\n", at most MAX_LINE bytes including the CRLF
    put body       exactly <bytes> bytes, then "\\r\\n" (not counted in <bytes>)
    reply line     e.g. "INSERTED 7\\r\\n"; RESERVED/FOUND/OK lines are followed by a
                   body of the announced size and "\\r\\n"

Simpler than the real thing: beanstalkd's client libraries each parse replies their own
way; here one small parser serves every client of ours, and it refuses anything that is not
beanstalkd's protocol (ReplyError) rather than guessing.
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
