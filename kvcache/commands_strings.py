"""Redis's string family: GET, SET and friends, with Redis 7.0's replies and errors.

On the request's journey this is where `GET stock:<sku>` from the appserver lands: the
RESP engine has parsed the request, checked arity and auth, and calls one handler here
with the session and `argv` (bytes). A handler returns a Python value that the engine
encodes (bytes → bulk, None → null, int → integer, SimpleString → +OK) or raises
`CommandError` with Redis's exact text.

Every value is a byte string. Numbers are byte strings too, as in Redis: `INCR` parses the
stored bytes as a signed 64-bit integer and stores the result back as digits.

Redis keeps a key's TTL when a command edits the value (INCR, APPEND, SETRANGE) and drops
it when a command replaces the value (SET, GETSET, MSET) unless SET is given KEEPTTL.

Commands that edit a value look the key up for writing first (`cache.touch`: a use of
the key, no hit or miss counted), as Redis's lookupKeyWrite does, even when they then
fail (INCR on "abc") or refuse (SET NX on an existing key). Values edited in place
(APPEND, SETRANGE) or made as strings (INCRBYFLOAT) are stored with a tag so that
OBJECT ENCODING answers as Redis would (commands_object.py).

Simpler than the real thing: there is no LCS or SUBSTR.
"""

from __future__ import annotations

from fractions import Fraction

from kvcache import long_double
from kvcache.cache import OutOfMemory
from kvcache.keyspace import TAG_RAW, TAG_STRING, Keyspace
from minisys.resp.codec import strict_int
from minisys.resp.engine import (
    ERR_NOT_FLOAT,
    ERR_NOT_INTEGER,
    ERR_OOM,
    ERR_SYNTAX,
    CommandTable,
    Session,
    parse_int,
)
from minisys.resp.values import CommandError, SimpleString

OK = SimpleString("OK")
# Redis's proto-max-bulk-len: no string may grow past 512 MB (APPEND, SETRANGE).
MAX_STRING = 512 * 1024 * 1024
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
ERR_TOO_BIG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"

table = CommandTable()


def _ks(session: Session) -> Keyspace:
    return session.server_state  # type: ignore[return-value]


def expire_deadline_ms(ks: Keyspace, unit_arg: bytes, value: bytes, command: str) -> int:
    """Redis's getExpireMillisecondsOrReply: EX/PX/EXAT/PXAT value → absolute Unix ms."""
    n = parse_int(value)
    seconds = unit_arg in (b"EX", b"EXAT")
    if n <= 0 or (seconds and n > INT64_MAX // 1000):
        raise CommandError(f"ERR invalid expire time in '{command}' command")
    ms = n * 1000 if seconds else n
    if unit_arg in (b"EX", b"PX"):
        ms += ks.now_ms()
        if ms > INT64_MAX:
            raise CommandError(f"ERR invalid expire time in '{command}' command")
    return ms


def parse_set_options(argv: list[bytes], start: int, *, for_set: bool) -> dict[bytes, object]:
    """Redis's parseExtendedStringArgumentsOrReply for SET (for_set) and GETEX.

    Returns the flags seen; the expire unit (EX/PX/EXAT/PXAT) maps to its raw argument.
    """
    flags: dict[bytes, object] = {}
    expire_units = (b"EX", b"PX", b"EXAT", b"PXAT")
    j = start
    while j < len(argv):
        opt = argv[j].upper()
        has_next = j + 1 < len(argv)
        expiring = any(u in flags for u in expire_units)
        if for_set and opt == b"NX" and b"XX" not in flags:
            flags[b"NX"] = True
        elif for_set and opt == b"XX" and b"NX" not in flags:
            flags[b"XX"] = True
        elif for_set and opt == b"GET":
            flags[b"GET"] = True
        elif for_set and opt == b"KEEPTTL" and not expiring:
            flags[b"KEEPTTL"] = True
        elif not for_set and opt == b"PERSIST" and not expiring:
            flags[b"PERSIST"] = True
        elif (
            opt in expire_units
            and has_next
            and b"KEEPTTL" not in flags
            and b"PERSIST" not in flags
            and not any(u in flags for u in expire_units if u != opt)
        ):
            flags[opt] = argv[j + 1]
            j += 1
        else:
            raise CommandError(ERR_SYNTAX)
        j += 1
    return flags


def _expire_from(ks: Keyspace, flags: dict[bytes, object], command: str) -> int | None:
    for unit in (b"EX", b"PX", b"EXAT", b"PXAT"):
        if unit in flags:
            return expire_deadline_ms(ks, unit, flags[unit], command)  # type: ignore[arg-type]
    return None


@table.command("get", 2, ("readonly", "fast"), first_key=1, last_key=1, key_step=1)
def get(session: Session, argv: list[bytes]) -> object:
    """Get the value of a key."""
    return session.server_state.cache.get(argv[1])


@table.command("set", -3, ("write", "denyoom"), first_key=1, last_key=1, key_step=1)
def set_(session: Session, argv: list[bytes]) -> object:
    """Set the string value of a key, with optional expiry and conditions."""
    ks = session.server_state
    cache = ks.cache
    # Redis refuses on memory before it even reads the options (only noeviction may).
    if cache.noeviction and cache.refuses_writes():
        raise CommandError(ERR_OOM)
    if len(argv) == 3:  # plain SET, the hottest write: ks.store inlined
        try:
            cache.store(argv[1], argv[2])
        except OutOfMemory:
            raise CommandError(ERR_OOM) from None
        return OK
    flags = parse_set_options(argv, 3, for_set=True)
    deadline = _expire_from(ks, flags, "set")
    key = argv[1]
    # Redis looks the key up for writing even when NX or XX then refuses: a use.
    old = cache.get(key) if b"GET" in flags else cache.touch(key)
    if (b"NX" in flags and old is not None) or (b"XX" in flags and old is None):
        return old if b"GET" in flags else None
    if deadline is not None:
        ks.store_ms(key, argv[2], deadline)
    else:
        ks.store(key, argv[2], keep_ttl=b"KEEPTTL" in flags)
    return old if b"GET" in flags else OK


@table.command("setnx", 3, ("write", "denyoom", "fast"), first_key=1, last_key=1, key_step=1)
def setnx(session: Session, argv: list[bytes]) -> object:
    """Set the value of a key, only if the key does not exist."""
    ks = _ks(session)
    ks.check_room()
    if ks.cache.touch(argv[1]) is not None:
        return 0
    ks.store(argv[1], argv[2])
    return 1


def _setex(session: Session, argv: list[bytes], unit: bytes, command: str) -> object:
    ks = _ks(session)
    ks.check_room()
    deadline = expire_deadline_ms(ks, unit, argv[2], command)
    ks.store_ms(argv[1], argv[3], deadline)
    return OK


@table.command("setex", 4, ("write", "denyoom"), first_key=1, last_key=1, key_step=1)
def setex(session: Session, argv: list[bytes]) -> object:
    """Set the value and expiration of a key (seconds)."""
    return _setex(session, argv, b"EX", "setex")


@table.command("psetex", 4, ("write", "denyoom"), first_key=1, last_key=1, key_step=1)
def psetex(session: Session, argv: list[bytes]) -> object:
    """Set the value and expiration in milliseconds of a key."""
    return _setex(session, argv, b"PX", "psetex")


@table.command("getset", 3, ("write", "denyoom", "fast"), first_key=1, last_key=1, key_step=1)
def getset(session: Session, argv: list[bytes]) -> object:
    """Set the string value of a key and return its old value."""
    ks = _ks(session)
    ks.check_room()
    old = ks.cache.get(argv[1])
    ks.store(argv[1], argv[2])
    return old


@table.command("getdel", 2, ("write", "fast"), first_key=1, last_key=1, key_step=1)
def getdel(session: Session, argv: list[bytes]) -> object:
    """Get the value of a key and delete the key."""
    cache = _ks(session).cache
    value = cache.get(argv[1])
    if value is not None:
        cache.delete(argv[1])
    return value


@table.command("getex", -2, ("write", "fast"), first_key=1, last_key=1, key_step=1)
def getex(session: Session, argv: list[bytes]) -> object:
    """Get the value of a key and optionally set its expiration."""
    ks = _ks(session)
    flags = parse_set_options(argv, 2, for_set=False)
    value = ks.cache.get(argv[1])
    if value is None:
        return None
    # Redis validates the expire time only once it found the key.
    deadline = _expire_from(ks, flags, "getex")
    if deadline is not None:
        ks.expire_ms(argv[1], deadline)
    elif b"PERSIST" in flags:
        ks.expire_ms(argv[1], None)
    return value


@table.command("mget", -2, ("readonly", "fast"), first_key=1, last_key=-1, key_step=1)
def mget(session: Session, argv: list[bytes]) -> object:
    """Get the values of all the given keys."""
    get_ = session.server_state.cache.get
    return [get_(key) for key in argv[1:]]


def _check_pairs(argv: list[bytes], command: str) -> None:
    if len(argv) % 2 == 0:
        raise CommandError(f"ERR wrong number of arguments for '{command}' command")


@table.command("mset", -3, ("write", "denyoom"), first_key=1, last_key=-1, key_step=2)
def mset(session: Session, argv: list[bytes]) -> object:
    """Set multiple keys to multiple values."""
    _check_pairs(argv, "mset")
    ks = _ks(session)
    ks.check_room()
    ks.store_many(list(zip(argv[1::2], argv[2::2], strict=True)))
    return OK


@table.command("msetnx", -3, ("write", "denyoom"), first_key=1, last_key=-1, key_step=2)
def msetnx(session: Session, argv: list[bytes]) -> object:
    """Set multiple keys to multiple values, only if none of the keys exist."""
    _check_pairs(argv, "msetnx")
    ks = _ks(session)
    ks.check_room()
    # Redis stops at the first existing key, which its write lookup has touched.
    if any(ks.cache.touch(argv[i]) is not None for i in range(1, len(argv), 2)):
        return 0
    ks.store_many(list(zip(argv[1::2], argv[2::2], strict=True)))
    return 1


@table.command("append", 3, ("write", "denyoom", "fast"), first_key=1, last_key=1, key_step=1)
def append(session: Session, argv: list[bytes]) -> object:
    """Append a value to a key."""
    ks = _ks(session)
    ks.check_room()
    old = ks.cache.touch(argv[1])
    if old is None:
        ks.store(argv[1], argv[2])
        return len(argv[2])
    if len(old) + len(argv[2]) > MAX_STRING:
        raise CommandError(ERR_TOO_BIG)
    value = old + argv[2]
    ks.store(argv[1], value, keep_ttl=True, tag=TAG_RAW)
    return len(value)


@table.command("strlen", 2, ("readonly", "fast"), first_key=1, last_key=1, key_step=1)
def strlen(session: Session, argv: list[bytes]) -> object:
    """Get the length of the value stored in a key."""
    value = _ks(session).cache.get(argv[1])
    return 0 if value is None else len(value)


def _incr(session: Session, key: bytes, delta: int) -> int:
    ks = _ks(session)
    ks.check_room()
    old = ks.cache.touch(key)
    current = 0
    if old is not None:
        parsed = strict_int(old) if len(old) <= 20 else None
        if parsed is None:
            raise CommandError(ERR_NOT_INTEGER)
        current = parsed
    result = current + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise CommandError("ERR increment or decrement would overflow")
    ks.store(key, b"%d" % result, keep_ttl=True)
    return result


@table.command("incr", 2, ("write", "denyoom", "fast"), first_key=1, last_key=1, key_step=1)
def incr(session: Session, argv: list[bytes]) -> object:
    """Increment the integer value of a key by one."""
    return _incr(session, argv[1], 1)


@table.command("decr", 2, ("write", "denyoom", "fast"), first_key=1, last_key=1, key_step=1)
def decr(session: Session, argv: list[bytes]) -> object:
    """Decrement the integer value of a key by one."""
    return _incr(session, argv[1], -1)


@table.command("incrby", 3, ("write", "denyoom", "fast"), first_key=1, last_key=1, key_step=1)
def incrby(session: Session, argv: list[bytes]) -> object:
    """Increment the integer value of a key by the given amount."""
    return _incr(session, argv[1], parse_int(argv[2]))


@table.command("decrby", 3, ("write", "denyoom", "fast"), first_key=1, last_key=1, key_step=1)
def decrby(session: Session, argv: list[bytes]) -> object:
    """Decrement the integer value of a key by the given number."""
    delta = parse_int(argv[2])
    if delta == INT64_MIN:
        raise CommandError("ERR decrement would overflow")
    return _incr(session, argv[1], -delta)


@table.command("incrbyfloat", 3, ("write", "denyoom", "fast"), first_key=1, last_key=1, key_step=1)
def incrbyfloat(session: Session, argv: list[bytes]) -> object:
    """Increment the float value of a key by the given amount."""
    ks = _ks(session)
    ks.check_room()
    old = ks.cache.touch(argv[1])
    current = long_double.parse(old) if old is not None else Fraction(0)
    delta = long_double.parse(argv[2])
    if current is None or delta is None:
        raise CommandError(ERR_NOT_FLOAT)
    result = long_double.add(current, delta)
    if isinstance(result, float):
        raise CommandError("ERR increment would produce NaN or Infinity")
    value = long_double.format_human(result)
    ks.store(argv[1], value, keep_ttl=True, tag=TAG_STRING)
    return value


@table.command("getrange", 4, ("readonly",), first_key=1, last_key=1, key_step=1)
def getrange(session: Session, argv: list[bytes]) -> object:
    """Get a substring of the string stored at a key."""
    start, end = parse_int(argv[2]), parse_int(argv[3])
    value = _ks(session).cache.get(argv[1])
    if value is None:
        return b""
    n = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    start = max(0, n + start if start < 0 else start)
    end = max(0, n + end if end < 0 else end)
    end = min(end, n - 1)
    if start > end or n == 0:
        return b""
    return value[start : end + 1]


@table.command("setrange", 4, ("write", "denyoom"), first_key=1, last_key=1, key_step=1)
def setrange(session: Session, argv: list[bytes]) -> object:
    """Overwrite part of a string at key starting at the specified offset."""
    ks = _ks(session)
    ks.check_room()
    offset = parse_int(argv[2])
    if offset < 0:
        raise CommandError("ERR offset is out of range")
    patch = argv[3]
    old = ks.cache.touch(argv[1])
    if not patch:
        return 0 if old is None else len(old)
    if offset + len(patch) > MAX_STRING:
        raise CommandError(ERR_TOO_BIG)
    base = old or b""
    if len(base) < offset:
        base += b"\0" * (offset - len(base))
    value = base[:offset] + patch + base[offset + len(patch) :]
    ks.store(argv[1], value, keep_ttl=True, tag=TAG_RAW)
    return len(value)
