"""SCAN's arguments as Redis reads them: `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`.

Journey: a learner's `SCAN 0 MATCH user:* COUNT 100` (or redis-cli `--scan`, redis-py's
`scan_iter`) reaches a store's SCAN handler (kvcache, minidb), which hands the arguments
here and gets back a `ScanArgs`; the store then walks its keys with its own cursor
strategy (kvcache: key snapshots; minidb: Redis's reverse-bit bucket walk). The parsing
lives in the shared kernel so both stores answer bad input with the same Redis errors:

| input                                    | reply                                       |
|------------------------------------------|---------------------------------------------|
| cursor not a C `strtoul` number, > 2**64-1 | `-ERR invalid cursor`                     |
| an option without its value, unknown option | `-ERR syntax error`                      |
| COUNT not an integer                     | `-ERR value is not an integer or out of range` |
| COUNT < 1                                | `-ERR syntax error`                         |

Options may repeat; the last one wins, as in Redis. The cursor is checked first.

Simpler than the real thing: these stores hold only strings, so TYPE is just compared
with "string" (Redis 7.0 also accepts any type name silently).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from minisys.resp.engine import ERR_SYNTAX, parse_int
from minisys.resp.glob import glob_matcher
from minisys.resp.values import CommandError

ERR_INVALID_CURSOR = "ERR invalid cursor"
# Redis's SCAN default when no COUNT is given.
DEFAULT_COUNT = 10
# Cursors are C unsigned longs: 64 bits.
U64_MAX = 2**64 - 1

_CURSOR = re.compile(rb"([+-]?)(\d*)")


@dataclass(frozen=True, slots=True)
class ScanArgs:
    """One SCAN call's arguments, parsed and checked."""

    cursor: int
    count: int = DEFAULT_COUNT
    match: Callable[[bytes], bool] | None = None
    type: bytes | None = None  # lower-cased TYPE argument

    @property
    def wants_strings(self) -> bool:
        """False when TYPE names another type: a strings-only store then returns no keys."""
        return self.type is None or self.type == b"string"


def parse_cursor(raw: bytes) -> int:
    """A SCAN cursor as Redis reads it: C's strtoul (sign allowed, a negative one wraps
    around 2**64, "" is 0), but no leading space, nothing after, nothing past 2**64 - 1."""
    m = _CURSOR.fullmatch(raw)
    if m is None or (m.group(1) and not m.group(2)):
        raise CommandError(ERR_INVALID_CURSOR)
    value = int(m.group(2) or b"0")
    if value > U64_MAX:
        raise CommandError(ERR_INVALID_CURSOR)
    return (-value) % (U64_MAX + 1) if m.group(1) == b"-" else value


def parse_scan(argv: list[bytes]) -> ScanArgs:
    """Parse `SCAN cursor [MATCH p] [COUNT n] [TYPE t]` (argv[0] is the command name)."""
    cursor = parse_cursor(argv[1])
    count, match, type_ = DEFAULT_COUNT, None, None
    i = 2
    while i < len(argv):
        opt = argv[i].lower()
        if i + 1 >= len(argv):
            raise CommandError(ERR_SYNTAX)
        if opt == b"count":
            count = parse_int(argv[i + 1])
            if count < 1:
                raise CommandError(ERR_SYNTAX)
        elif opt == b"match":
            match = glob_matcher(argv[i + 1])
        elif opt == b"type":
            type_ = argv[i + 1].lower()
        else:
            raise CommandError(ERR_SYNTAX)
        i += 2
    return ScanArgs(cursor, count, match, type_)
