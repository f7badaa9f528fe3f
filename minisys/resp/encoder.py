"""Values → RESP bytes: commands for clients, replies in the connection's protocol version.

On the request's journey this is the last step on the server (a kvcache handler's return
value becomes bytes for the socket) and the first step in `client.py` (a command becomes
a multibulk). Which bytes a reply gets depends on the connection: RESP2 until the client
says `HELLO 3`, then RESP3, where nulls, maps, sets, doubles and booleans have their own
types. The RESP2 fallbacks are the ones Redis uses:

| value            | RESP3                 | RESP2                        |
|------------------|-----------------------|------------------------------|
| `None`           | `_`                   | `$-1`                        |
| `NULL_ARRAY`     | `_`                   | `*-1`                        |
| `True`           | `#t`                  | `:1`                         |
| `1.5`            | `,1.5`                | `$3 1.5`                     |
| `{b"k": 1}`      | `%1 $1 k :1`          | `*2 $1 k :1` (flat array)    |
| `{b"m"}` (set)   | `~1 $1 m`             | `*1 $1 m`                    |
| int ≥ 2**63      | `(9223372036854775808`| bulk string of the digits    |

(each space above stands for CRLF; see PROTOCOL.md for full byte examples)

Simpler than the real thing: Redis formats doubles with "%.17g"; we use Python's
shortest round-tripping repr (`inf`, `-inf`, `nan` are spelled as Redis spells them).
"""

from __future__ import annotations

from minisys.resp.values import NULL_ARRAY, Push, RespError, SimpleString, Verbatim

# +OK, +PONG, +QUEUED… are answered millions of times: keep their bytes. Bounded because
# a layer could build simple strings from user data.
MAX_STATUS_REPLIES = 64
STATUS_REPLIES: dict[str, bytes] = {}

# Bulk replies shorter than this (a GET of a small value) take their "$n\r\n" header from
# a table and cost one join instead of a %-format; 1024 headers are ~50 KB.
SHORT_BULK = 1024
BULK_HEADERS = [b"$%d\r\n" % n for n in range(SHORT_BULK)]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def encode_command(*args: bytes | str | int | float) -> bytes:
    """A request as a multibulk of bulk strings: encode_command("GET", "k")."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        cls = type(arg)
        if cls is str:  # what callers send most: inline, not a call to _arg_bytes
            arg = arg.encode()
        elif cls is not bytes:
            arg = _arg_bytes(arg)
        append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


def _arg_bytes(arg: object) -> bytes:
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, bool):
        raise TypeError("booleans are ambiguous in commands; send b'1'/b'0' or 'true'")
    if isinstance(arg, (int, float)):
        return repr(arg).encode()
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return bytes(arg)
    raise TypeError(f"cannot send a {type(arg).__name__} as a RESP argument")


def _utf8(text: str) -> bytes:
    """Text as UTF-8; bytes the parser decoded as surrogates come back unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from our parser
        return text.encode("utf-8", "backslashreplace")


def _line(text: str) -> bytes:
    """Simple strings and errors are one line; Redis replaces CR/LF with spaces too."""
    data = _utf8(text)
    if b"\r" in data or b"\n" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ")
    return data


def encode_reply(value: object, proto: int = 2) -> bytes:
    """Encode one reply value for a RESP2 (proto=2) or RESP3 (proto=3) connection."""
    t = type(value)
    if t is bytes:
        n = len(value)
        if n < SHORT_BULK:
            return b"".join((BULK_HEADERS[n], value, b"\r\n"))
        return b"$%d\r\n%b\r\n" % (n, value)
    if t is SimpleString:
        data = STATUS_REPLIES.get(value)
        if data is None:
            data = b"+%b\r\n" % _line(value)
            if len(STATUS_REPLIES) < MAX_STATUS_REPLIES:
                STATUS_REPLIES[value] = data
        return data
    if value is None:
        return b"_\r\n" if proto == 3 else b"$-1\r\n"
    if t is int and _INT64_MIN <= value <= _INT64_MAX:
        return b":%d\r\n" % value
    out: list[bytes] = []
    _encode_into(value, proto, out)
    return b"".join(out)


def _encode_into(value: object, proto: int, out: list[bytes]) -> None:
    t = type(value)
    if t is bytes:
        out.append(b"$%d\r\n%b\r\n" % (len(value), value))
    elif value is None or value is NULL_ARRAY:
        out.append(b"_\r\n" if proto == 3 else b"$-1\r\n" if value is None else b"*-1\r\n")
    elif t is bool:
        if proto == 3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if value else b":0\r\n")
    elif isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            out.append(b":%d\r\n" % value)
        elif proto == 3:
            out.append(b"(%d\r\n" % value)
        else:
            digits = b"%d" % value
            out.append(b"$%d\r\n%b\r\n" % (len(digits), digits))
    elif isinstance(value, SimpleString):
        out.append(b"+%b\r\n" % _line(value))
    elif isinstance(value, str):
        data = _utf8(value)
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif isinstance(value, RespError):
        _encode_error(value.message, proto, out)
    elif isinstance(value, (list, tuple)):
        if proto == 3 and isinstance(value, Push):
            out.append(b">%d\r\n" % len(value))
        else:
            out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, proto, out)
    elif isinstance(value, dict):
        if proto == 3:
            out.append(b"%%%d\r\n" % len(value))
        else:
            out.append(b"*%d\r\n" % (2 * len(value)))  # a flat key, value, key… array
        for key, item in value.items():
            _encode_into(key, proto, out)
            _encode_into(item, proto, out)
    elif isinstance(value, (set, frozenset)):
        out.append((b"~%d\r\n" if proto == 3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, proto, out)
    elif isinstance(value, float):
        text = repr(value).encode()
        if proto == 3:
            out.append(b",%b\r\n" % text)
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(text), text))
    elif isinstance(value, Verbatim):
        if proto == 3:
            body = value.format + b":" + value.text
            out.append(b"=%d\r\n%b\r\n" % (len(body), body))
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(value.text), value.text))
    elif isinstance(value, (bytearray, memoryview)):
        _encode_into(bytes(value), proto, out)
    else:
        raise TypeError(f"cannot encode a {type(value).__name__} as a RESP reply")


def _encode_error(message: str, proto: int, out: list[bytes]) -> None:
    data = _utf8(message)
    if proto == 3 and (b"\r" in data or b"\n" in data):
        out.append(b"!%d\r\n%b\r\n" % (len(data), data))  # RESP3 blob error keeps them
    else:
        out.append(b"-%b\r\n" % _line(message))
