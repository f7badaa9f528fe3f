"""Redis glob patterns for KEYS and SCAN MATCH, compiled to a regular expression.

Journey: the stores' KEYS and SCAN commands (kvcache, minidb) turn the pattern of
`KEYS user:*` or `SCAN 0 MATCH order:[0-9]*` into a predicate here and filter keys with it.
It lives in the shared kernel because every Redis-speaking store matches keys the same way.

Redis's `stringmatchlen` rules, which differ from Python's fnmatch in small ways:
`*` any run of bytes, `?` one byte, `[abc]` one of, `[^a-c]` none of (with `^`, not `!`),
`[z-a]` is the same range as `[a-z]`, and `\\x` matches `x` literally, also inside
brackets. An unclosed `[` runs to the end of the pattern, as in Redis.

Simpler than the real thing: Redis also offers a case-insensitive mode (unused by KEYS
and SCAN) and guards against exponential `*` backtracking; Python's regex engine handles
the patterns people actually write.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

# Compiled patterns kept: clients repeat the same few patterns across SCAN calls.
PATTERN_CACHE = 256


@lru_cache(maxsize=PATTERN_CACHE)
def glob_matcher(pattern: bytes) -> Callable[[bytes], bool]:
    """A predicate that is true for keys matching the Redis glob `pattern`."""
    if pattern == b"*":
        return lambda key: True
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i : i + 1]))
        elif c == b"[":
            i, part = _char_class(pattern, i + 1)
            out.append(part)
        else:
            out.append(re.escape(c))
        i += 1
    regex = re.compile(b"".join(out) + b"\\Z", re.DOTALL)
    return lambda key: regex.match(key) is not None


def _char_class(pattern: bytes, i: int) -> tuple[int, bytes]:
    """Translate `[...]` starting just after `[`; return (index of `]`, regex text)."""
    n = len(pattern)
    negate = i < n and pattern[i] == ord("^")
    if negate:
        i += 1
    members: list[bytes] = []
    while i < n and pattern[i] != ord("]"):
        if pattern[i] == ord("\\") and i + 1 < n:
            i += 1
            members.append(re.escape(pattern[i : i + 1]))
        elif i + 2 < n and pattern[i + 1] == ord("-") and pattern[i + 2] != ord("]"):
            lo, hi = sorted((pattern[i], pattern[i + 2]))
            members.append(re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi])))
            i += 2
        else:
            members.append(re.escape(pattern[i : i + 1]))
        i += 1
    if not members:
        return i, b"(?!)" if not negate else b"."
    return i, b"[" + (b"^" if negate else b"") + b"".join(members) + b"]"
