"""minidb's data commands with Redis's exact replies: strings, counters, keys, SCAN.

Journey: the RESP engine (`minisys.resp`) parsed `SET k v NX`, checked the arity and called
the wrapper that `server.py` registered; the wrapper runs the handler below against a
`WriteSet` (reads see the db plus this command's own writes; writes are buffered) and then
commits the buffered ops as one batch and waits for the fsync policy. Inside `EXEC`
(`transactions.py`) the same handlers run one after another against one shared WriteSet.

Every handler is `handler(ws: WriteSet, argv: list[bytes]) -> reply`; a user error is a
`CommandError` with Redis's text, raised before anything is written.

| command                          | reply                                               |
|----------------------------------|-----------------------------------------------------|
| GET k / GETDEL k                 | bulk or null                                        |
| SET k v [NX|XX] [GET] [KEEPTTL]  | +OK; null if NX/XX failed; old value with GET       |
| SETNX k v / MSETNX k v ...       | :1 set, :0 not                                      |
| MGET k... / MSET k v ...         | array of bulk-or-null / +OK (one atomic batch)      |
| DEL k... / UNLINK / EXISTS k...  | number deleted / number existing (repeats count)    |
| INCR/DECR/INCRBY/DECRBY          | the new value; errors for non-integers and overflow |
| APPEND k v / STRLEN k            | new length / length (0 if missing)                  |
| TYPE k                           | +string or +none                                    |
| KEYS pattern / SCAN c [MATCH p] [COUNT n] [TYPE t] | keys / [next cursor, keys]        |
| DBSIZE / FLUSHALL / FLUSHDB      | :n / +OK                                            |

Simpler than the real thing: minidb stores only strings, so WRONGTYPE never happens and
TYPE is "string" or "none"; keys never expire (SET's EX/PX/EXAT/PXAT are refused with a
clear error instead of being silently ignored).
"""

from __future__ import annotations

from collections.abc import Callable

from minisys.resp.codec import strict_int
from minisys.resp.engine import ERR_NOT_INTEGER, ERR_SYNTAX, parse_int
from minisys.resp.glob import glob_matcher
from minisys.resp.scan import parse_scan
from minisys.resp.values import CommandError, SimpleString

from .record import MAX_KEY_SIZE, MAX_VALUE_SIZE
from .writeset import WriteSet

OK = SimpleString("OK")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ERR_TOO_BIG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
ERR_KEY_TOO_BIG = f"ERR key is too large for minidb (at most {MAX_KEY_SIZE} bytes)"
ERR_NO_EXPIRY = "ERR minidb keys never expire: EX, PX, EXAT and PXAT are not supported"


def _put(ws: WriteSet, key: bytes, value: bytes) -> None:
    if len(key) > MAX_KEY_SIZE:
        raise CommandError(ERR_KEY_TOO_BIG)
    if len(value) > MAX_VALUE_SIZE:
        raise CommandError(ERR_TOO_BIG)
    ws.put(key, value)


def get(ws: WriteSet, argv: list[bytes]) -> object:
    """Get the value of a key."""
    return ws.get(argv[1])


def getdel(ws: WriteSet, argv: list[bytes]) -> object:
    """Get the value of a key and delete the key."""
    value = ws.get(argv[1])
    if value is not None:
        ws.delete(argv[1])
    return value


def set_(ws: WriteSet, argv: list[bytes]) -> object:
    """Set the string value of a key."""
    key, value = argv[1], argv[2]
    condition = None
    want_old = expiry = False
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt in (b"NX", b"XX") and condition is None:
            condition = opt
        elif opt == b"GET" and not want_old:
            want_old = True
        elif opt == b"KEEPTTL" and not expiry:
            expiry = True  # nothing expires, so keeping the TTL is a no-op
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and not expiry and i + 1 < len(argv):
            i += 1
            if parse_int(argv[i]) <= 0:
                raise CommandError("ERR invalid expire time in 'set' command")
            raise CommandError(ERR_NO_EXPIRY)
        else:
            raise CommandError(ERR_SYNTAX)
        i += 1
    old = ws.get(key) if want_old else None
    exists = old is not None if want_old else (ws.exists(key) if condition else False)
    if (condition == b"NX" and exists) or (condition == b"XX" and not exists):
        return old if want_old else None
    _put(ws, key, value)
    return old if want_old else OK


def setnx(ws: WriteSet, argv: list[bytes]) -> object:
    """Set the value of a key, only if the key does not exist."""
    if ws.exists(argv[1]):
        return 0
    _put(ws, argv[1], argv[2])
    return 1


def getset(ws: WriteSet, argv: list[bytes]) -> object:
    """Set the string value of a key and return its old value."""
    old = ws.get(argv[1])
    _put(ws, argv[1], argv[2])
    return old


def mget(ws: WriteSet, argv: list[bytes]) -> object:
    """Get the values of all the given keys."""
    return [ws.get(key) for key in argv[1:]]


def _pairs(argv: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(argv) % 2 == 0:
        raise CommandError(
            f"ERR wrong number of arguments for '{argv[0].decode().lower()}' command"
        )
    return list(zip(argv[1::2], argv[2::2], strict=True))


def mset(ws: WriteSet, argv: list[bytes]) -> object:
    """Set multiple keys to multiple values (atomically: one batch in the log)."""
    for key, value in _pairs(argv):
        _put(ws, key, value)
    return OK


def msetnx(ws: WriteSet, argv: list[bytes]) -> object:
    """Set multiple keys to multiple values, only if none of the keys exist."""
    pairs = _pairs(argv)
    if any(ws.exists(key) for key, _ in pairs):
        return 0
    for key, value in pairs:
        _put(ws, key, value)
    return 1


def del_(ws: WriteSet, argv: list[bytes]) -> object:
    """Delete keys (all in one batch); the number that existed."""
    return sum(ws.delete(key) for key in argv[1:])


def exists(ws: WriteSet, argv: list[bytes]) -> object:
    """Determine if keys exist (a key named twice counts twice)."""
    return sum(ws.exists(key) for key in argv[1:])


def _incr_by(ws: WriteSet, key: bytes, delta: int) -> int:
    old = ws.get(key)
    current = 0 if old is None else strict_int(old)
    if current is None:
        raise CommandError(ERR_NOT_INTEGER)
    new = current + delta
    if not INT64_MIN <= new <= INT64_MAX:
        raise CommandError("ERR increment or decrement would overflow")
    ws.put(key, b"%d" % new)
    return new


def incr(ws: WriteSet, argv: list[bytes]) -> object:
    """Increment the integer value of a key by one."""
    return _incr_by(ws, argv[1], 1)


def decr(ws: WriteSet, argv: list[bytes]) -> object:
    """Decrement the integer value of a key by one."""
    return _incr_by(ws, argv[1], -1)


def incrby(ws: WriteSet, argv: list[bytes]) -> object:
    """Increment the integer value of a key by the given amount."""
    return _incr_by(ws, argv[1], parse_int(argv[2]))


def decrby(ws: WriteSet, argv: list[bytes]) -> object:
    """Decrement the integer value of a key by the given number."""
    delta = parse_int(argv[2])
    if delta == INT64_MIN:
        raise CommandError("ERR decrement would overflow")
    return _incr_by(ws, argv[1], -delta)


def append(ws: WriteSet, argv: list[bytes]) -> object:
    """Append a value to a key; the new length."""
    value = (ws.get(argv[1]) or b"") + argv[2]
    _put(ws, argv[1], value)
    return len(value)


def strlen(ws: WriteSet, argv: list[bytes]) -> object:
    """Get the length of the value stored in a key."""
    return len(ws.get(argv[1]) or b"")


def type_(ws: WriteSet, argv: list[bytes]) -> object:
    """Determine the type stored at key."""
    return SimpleString("string" if ws.exists(argv[1]) else "none")


def keys(ws: WriteSet, argv: list[bytes]) -> object:
    """Find all keys matching the given pattern."""
    match = glob_matcher(argv[1])
    return [key for key in ws.all_keys() if match(key)]


def scan(ws: WriteSet, argv: list[bytes]) -> object:
    """Incrementally iterate the keys space."""
    args = parse_scan(argv)
    cursor, found = ws.db.scan(args.cursor, args.count, args.match)
    if not args.wants_strings:
        found = []
    return [b"%d" % cursor, found]


def dbsize(ws: WriteSet, argv: list[bytes]) -> object:
    """Return the number of keys in the database."""
    return ws.size()


def flushall(ws: WriteSet, argv: list[bytes]) -> object:
    """Remove all keys (one FLUSH record in the log)."""
    if len(argv) > 2 or (len(argv) == 2 and argv[1].upper() not in (b"ASYNC", b"SYNC")):
        raise CommandError(ERR_SYNTAX)
    ws.flush()
    return OK


# name, arity, flags, handler, (first key, last key, key step) as Redis's COMMAND shows them
DATA_COMMANDS: list[tuple[str, int, tuple[str, ...], Callable, tuple[int, int, int]]] = [
    ("get", 2, ("readonly", "fast"), get, (1, 1, 1)),
    ("getdel", 2, ("write", "fast"), getdel, (1, 1, 1)),
    ("set", -3, ("write", "denyoom"), set_, (1, 1, 1)),
    ("setnx", 3, ("write", "denyoom", "fast"), setnx, (1, 1, 1)),
    ("getset", 3, ("write", "denyoom", "fast"), getset, (1, 1, 1)),
    ("mget", -2, ("readonly", "fast"), mget, (1, -1, 1)),
    ("mset", -3, ("write", "denyoom"), mset, (1, -1, 2)),
    ("msetnx", -3, ("write", "denyoom"), msetnx, (1, -1, 2)),
    ("del", -2, ("write",), del_, (1, -1, 1)),
    ("unlink", -2, ("write", "fast"), del_, (1, -1, 1)),
    ("exists", -2, ("readonly", "fast"), exists, (1, -1, 1)),
    ("incr", 2, ("write", "denyoom", "fast"), incr, (1, 1, 1)),
    ("decr", 2, ("write", "denyoom", "fast"), decr, (1, 1, 1)),
    ("incrby", 3, ("write", "denyoom", "fast"), incrby, (1, 1, 1)),
    ("decrby", 3, ("write", "denyoom", "fast"), decrby, (1, 1, 1)),
    ("append", 3, ("write", "denyoom"), append, (1, 1, 1)),
    ("strlen", 2, ("readonly", "fast"), strlen, (1, 1, 1)),
    ("type", 2, ("readonly", "fast"), type_, (1, 1, 1)),
    ("keys", 2, ("readonly",), keys, (0, 0, 0)),
    ("scan", -2, ("readonly",), scan, (0, 0, 0)),
    ("dbsize", 1, ("readonly", "fast"), dbsize, (0, 0, 0)),
    ("flushall", -1, ("write",), flushall, (0, 0, 0)),
    ("flushdb", -1, ("write",), flushall, (0, 0, 0)),
]
