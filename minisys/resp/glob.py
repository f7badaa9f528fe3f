"""Redis glob patterns for KEYS and SCAN MATCH, compiled to a regular expression.

Journey: the stores' KEYS and SCAN commands (kvcache, minidb) turn the pattern of
`KEYS user:*` or `SCAN 0 MATCH order:[0-9]*` into a predicate here and filter keys with it.
It lives in the shared kernel because every Redis-speaking store matches keys the same way.

Redis's `stringmatchlen` rules, which differ from Python's fnmatch in small ways:
`*` any run of bytes, `?` one byte, `[abc]` one of, `[^a-c]` none of (with `^`, not `!`),
`[z-a]` is the same range as `[a-z]`, and `\\x` matches `x` literally, also inside
brackets. An unclosed `[` runs to the end of the pattern, and in `a-z` even `]` may end
a range (`[?-]` is the range `-`..`?`, still open), as Redis's loop reads it; the kvcache
tests check KEYS differentially against redis-server.

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
    """Translate `[...]` starting after the bracket, following stringmatchlen's loop
    step by step; returns (index where the class ends, regex)."""
    n = len(pattern)
    negate = pattern[i : i + 1] == b"^"
    if negate:
        i += 1
    items = []
    while True:
        if i < n - 1 and pattern[i] == 0x5C:  # backslash: the next byte is literal
            i += 1
            items.append(re.escape(pattern[i : i + 1]))
        elif i < n and pattern[i] == 0x5D:  # "]" closes the class
            break
        elif i >= n:  # Redis lets an unclosed class run to the end of the pattern
            i -= 1
            break
        elif n - i >= 3 and pattern[i + 1] == 0x2D:  # "a-z", where even "]" may end it
            lo, hi = sorted((pattern[i], pattern[i + 2]))
            items.append(re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi])))
            i += 2
        else:
            items.append(re.escape(pattern[i : i + 1]))
        i += 1
    body = b"".join(items)
    if not body:
        return i, b"." if negate else b"(?!)"
    return i, b"[" + (b"^" if negate else b"") + body + b"]"
