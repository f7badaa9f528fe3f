"""The Python values that stand for RESP types, shared by the parser and the encoder.

On the request's journey this is the vocabulary: a kvcache or minidb command handler
returns one of these values, `encoder.py` turns it into bytes for the client's protocol
version, and on the client side `codec.py` turns bytes back into the same values.

| RESP2 / RESP3 wire type        | Python value                                  |
|--------------------------------|-----------------------------------------------|
| `+OK`                          | `SimpleString("OK")` (a `str`)                |
| `-ERR …` / `!len` blob error   | `RespError("ERR …")` (an `Exception`)         |
| `:42` / `(1234…` big number    | `int` (`bool` → `#t`/`#f` in RESP3, `:1`/`:0`)|
| `$5 hello`                     | `bytes` (a `str` is sent as UTF-8)            |
| `$-1` / `*-1` / `_`            | `None` (`NULL_ARRAY` forces `*-1` in RESP2)   |
| `*n`                           | `list` / `tuple`                              |
| `%n` map                       | `dict` (a flat array in RESP2)                |
| `~n` set                       | `set` / `frozenset` (an array in RESP2)       |
| `,1.5` double                  | `float` (a bulk string in RESP2)              |
| `=n txt:…` verbatim            | `Verbatim(b"txt", b"…")` (a bulk in RESP2)    |
| `>n` push                      | `Push([...])` (an array in RESP2)             |

Read next: `codec.py` (bytes → values) and `encoder.py` (values → bytes).

Simpler than the real thing: attributes (`|`) are parsed and kept aside, never produced;
big numbers are plain Python ints.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the RESP framing; the connection cannot continue.

    `message` is Redis's exact text (without the leading "ERR "), e.g.
    "Protocol error: invalid bulk length". `reply` is False for the one case where Redis
    closes silently (the query buffer limit).
    """

    def __init__(self, message: str, *, reply: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.reply = reply


class SimpleString(str):
    """A status reply such as `+OK` or `+PONG`: short text without CR or LF."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SimpleString({str.__repr__(self)})"


class RespError(Exception):
    """An error reply. `message` is the full text including the code: "ERR syntax error".

    It is an exception so a client can raise it, and a value so a pipeline or an EXEC
    reply can carry it in a list; two errors with the same text compare equal.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> str:
        """The first word by convention: ERR, WRONGTYPE, NOAUTH, NOPROTO, OOM…"""
        return self.message.split(" ", 1)[0]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RespError) and other.message == self.message

    def __hash__(self) -> int:
        return hash(("RespError", self.message))

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"


class CommandError(RespError):
    """Raise from a command handler to answer with an error: CommandError("ERR syntax error")."""


class Verbatim:
    """A RESP3 verbatim string: a 3-letter format (`txt`, `mkd`) and the text bytes."""

    __slots__ = ("format", "text")

    def __init__(self, format: bytes, text: bytes) -> None:
        if len(format) != 3:
            raise ValueError("verbatim format must be exactly 3 bytes")
        self.format = format
        self.text = text

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Verbatim) and other.format == self.format and other.text == self.text
        )

    def __hash__(self) -> int:
        return hash((self.format, self.text))

    def __repr__(self) -> str:
        return f"Verbatim({self.format!r}, {self.text!r})"


class Push(list):
    """A RESP3 out-of-band push message (pub/sub, client tracking)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Push({list.__repr__(self)})"


class _NullArray:
    """The RESP2 null array `*-1` (BLPOP timeout, EXEC after a failed WATCH)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY = _NullArray()
