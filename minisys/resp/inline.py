"""Split an inline command line the way Redis does (sds.c `sdssplitargs`).

On the request's journey this is the path for people typing into `telnet` or `nc`, and
for redis-benchmark's inline `PING`: anything that does not start with `*` is one line,
split on blanks, with double quotes (C-like escapes `\\n \\r \\t \\b \\a \\xHH`) and single
quotes (only `\\'` is an escape). `codec.py` finds the line; this module only splits it.

Rules kept from Redis, because a user who copies a line from redis-cli expects them:
- a closing quote must be followed by a blank or the end of the line, else the line is
  rejected (`"foo"bar` is an error, not `foobar`);
- an unterminated quote is an error ("unbalanced quotes in request");
- the line is a C string to Redis: a NUL byte ends it;
- between tokens any C `isspace` byte separates, but inside an unquoted token only space,
  tab, CR, LF end it (a vertical tab or form feed stays part of the token).

Simpler than the real thing: identical rules, written as a small state machine over
characters; lines without quotes or odd bytes take a `bytes.split()` fast path.
"""

from __future__ import annotations

import re

# Bytes that force the careful path: quotes, and the bytes where Redis's rules differ
# from bytes.split() (NUL ends the line; VT and FF do not end an unquoted token).
_NEEDS_CAREFUL_SPLIT = re.compile(rb"[\"'\x00\x0b\x0c]")

_BLANKS = b" \t\n\r\x0b\x0c"  # C isspace(): what separates tokens
_TOKEN_ENDS = b" \t\n\r"  # what ends an unquoted token
_HEX = b"0123456789abcdefABCDEF"
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


class UnbalancedQuotes(ValueError):
    """The line has an unterminated quote or a closing quote glued to more text."""


def split_inline(line: bytes) -> list[bytes]:
    """Split one inline request line (without its line ending) into arguments."""
    if _NEEDS_CAREFUL_SPLIT.search(line) is None:
        return line.split()
    return _split_careful(line.split(b"\0", 1)[0])


def _split_careful(line: bytes) -> list[bytes]:
    args: list[bytes] = []
    n = len(line)
    i = 0
    while True:
        while i < n and line[i] in _BLANKS:
            i += 1
        if i >= n:
            return args
        token = bytearray()
        quote = 0  # 0 outside quotes, else the quote byte we are inside
        while True:
            c = line[i] if i < n else -1
            if quote == 0x22:  # inside "double quotes"
                if c == 0x5C and i + 3 < n and line[i + 1] == 0x78 and _is_hex_pair(line, i):
                    token.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    token.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    _check_after_close(line, i)
                    i += 1
                    break
                elif c == -1:
                    raise UnbalancedQuotes
                else:
                    token.append(c)
            elif quote == 0x27:  # inside 'single quotes'
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    token.append(0x27)
                elif c == 0x27:
                    _check_after_close(line, i)
                    i += 1
                    break
                elif c == -1:
                    raise UnbalancedQuotes
                else:
                    token.append(c)
            elif c == -1 or c in _TOKEN_ENDS:
                break
            elif c == 0x22 or c == 0x27:
                quote = c
            else:
                token.append(c)
            i += 1
        args.append(bytes(token))


def _is_hex_pair(line: bytes, i: int) -> bool:
    return line[i + 2] in _HEX and line[i + 3] in _HEX


def _check_after_close(line: bytes, i: int) -> None:
    """Redis: a closing quote must be followed by a blank or by nothing at all."""
    if i + 1 < len(line) and line[i + 1] not in _BLANKS:
        raise UnbalancedQuotes
