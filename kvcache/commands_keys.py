"""Redis's generic-key family: DEL, EXISTS, EXPIRE, TTL, SCAN, RENAME, OBJECT …

On the request's journey these are the commands that manage keys rather than values: the
appserver's `DEL stock:<sku>` after an order (cache invalidation), a learner's `TTL` and
`SCAN` to look inside. Replies and error strings are Redis 7.0's.

TTL replies, as Redis gives them:

| key state          | TTL / PTTL          | EXPIRETIME / PEXPIRETIME |
|--------------------|---------------------|--------------------------|
| absent             | -2                  | -2                       |
| no expiry          | -1                  | -1                       |
| expires at `when`  | (ms + 500) // 1000  | (when + 500) // 1000 / when |

EXPIRE's options (7.0): NX only without a TTL, XX only with one, GT only if the new
deadline is later (no TTL counts as forever, so GT never applies to it), LT only if
earlier. A deadline at or before now deletes the key and still answers 1.

Which lookups count as a use of the key (its recency and OBJECT IDLETIME) is Redis's:
EXPIRE, PERSIST and RENAME look keys up for writing (`cache.touch`, no hit/miss counted),
TOUCH reads (`cache.get`), EXISTS, TYPE and the TTL family do not touch (`cache.probe`).

Simpler than the real thing: no COPY, MOVE, DUMP/RESTORE, SORT. OBJECT: commands_object.py.
"""

from __future__ import annotations

from kvcache.commands_strings import INT64_MAX, INT64_MIN, OK
from kvcache.keyspace import Keyspace
from minisys.resp.engine import CommandTable, Session, parse_int
from minisys.resp.glob import glob_matcher
from minisys.resp.scan import parse_scan
from minisys.resp.values import CommandError, SimpleString

table = CommandTable()


def _ks(session: Session) -> Keyspace:
    return session.server_state  # type: ignore[return-value]


@table.command("del", -2, ("write",), first_key=1, last_key=-1, key_step=1)
def del_(session: Session, argv: list[bytes]) -> object:
    """Delete a key."""
    delete = _ks(session).cache.delete
    return sum(delete(key) for key in argv[1:])


@table.command("unlink", -2, ("write", "fast"), first_key=1, last_key=-1, key_step=1)
def unlink(session: Session, argv: list[bytes]) -> object:
    """Delete a key (Redis frees it in the background; ours is freed at once)."""
    return del_(session, argv)


@table.command("exists", -2, ("readonly", "fast"), first_key=1, last_key=-1, key_step=1)
def exists(session: Session, argv: list[bytes]) -> object:
    """Determine if a key exists (a key named twice counts twice)."""
    probe = _ks(session).cache.probe
    return sum(probe(key) is not None for key in argv[1:])


@table.command("touch", -2, ("readonly", "fast"), first_key=1, last_key=-1, key_step=1)
def touch(session: Session, argv: list[bytes]) -> object:
    """Alter the last access time of a key(s). Returns the number of existing keys."""
    get = _ks(session).cache.get
    return sum(get(key) is not None for key in argv[1:])


@table.command("type", 2, ("readonly", "fast"), first_key=1, last_key=1, key_step=1)
def type_(session: Session, argv: list[bytes]) -> object:
    """Determine the type stored at key."""
    found = _ks(session).cache.probe(argv[1]) is not None
    return SimpleString("string" if found else "none")


@table.command("keys", 2, ("readonly",))
def keys(session: Session, argv: list[bytes]) -> object:
    """Find all keys matching the given pattern."""
    match = glob_matcher(argv[1])
    return [key for key in _ks(session).cache if match(key)]


@table.command("scan", -2, ("readonly",))
def scan(session: Session, argv: list[bytes]) -> object:
    """Incrementally iterate the keys space."""
    args = parse_scan(argv)
    next_cursor, batch = _ks(session).scan(args.cursor, args.count)
    if args.match is not None:
        batch = [key for key in batch if args.match(key)]
    if not args.wants_strings:
        batch = []
    return [b"%d" % next_cursor, batch]


@table.command("randomkey", 1, ("readonly",))
def randomkey(session: Session, argv: list[bytes]) -> object:
    """Return a random key from the keyspace."""
    return _ks(session).cache.random_key()


def _rename(session: Session, argv: list[bytes], *, nx: bool) -> object:
    ks = _ks(session)
    src, dst = argv[1], argv[2]
    value = ks.cache.touch(src)
    if value is None:
        raise CommandError("ERR no such key")
    if src == dst:
        return 0 if nx else OK
    if nx and ks.cache.touch(dst) is not None:
        return 0
    deadline = ks.deadline_ms(src)
    tag = ks.cache.tag(src)  # the value moves as it is: its encoding goes with it
    ks.cache.delete(src)
    if deadline is None:
        ks.store(dst, value, tag=tag)
    else:
        ks.store_ms(dst, value, deadline, tag=tag)
    return 1 if nx else OK


@table.command("rename", 3, ("write",), first_key=1, last_key=2, key_step=1)
def rename(session: Session, argv: list[bytes]) -> object:
    """Rename a key."""
    return _rename(session, argv, nx=False)


@table.command("renamenx", 3, ("write", "fast"), first_key=1, last_key=2, key_step=1)
def renamenx(session: Session, argv: list[bytes]) -> object:
    """Rename a key, only if the new key does not exist."""
    return _rename(session, argv, nx=True)


def _expire(session: Session, argv: list[bytes], *, unit_ms: int, absolute: bool) -> object:
    """Redis's expireGenericCommand for EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT."""
    ks = _ks(session)
    flags = set()
    for raw in argv[3:]:
        opt = raw.upper()
        if opt not in (b"NX", b"XX", b"GT", b"LT"):
            raise CommandError(f"ERR Unsupported option {raw.decode('utf-8', 'replace')}")
        flags.add(opt)
    if b"NX" in flags and flags & {b"XX", b"GT", b"LT"}:
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if {b"GT", b"LT"} <= flags:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    when = parse_int(argv[2])
    name = argv[0].decode("utf-8", "replace").lower()
    if unit_ms == 1000:
        if when > INT64_MAX // 1000 or when < INT64_MIN // 1000:
            raise CommandError(f"ERR invalid expire time in '{name}' command")
        when *= 1000
    if not absolute:
        base = ks.now_ms()
        if when > INT64_MAX - base:
            raise CommandError(f"ERR invalid expire time in '{name}' command")
        when += base
    key = argv[1]
    if ks.cache.touch(key) is None:
        return 0
    current = ks.deadline_ms(key)
    if (
        (b"NX" in flags and current is not None)
        or (b"XX" in flags and current is None)
        or (b"GT" in flags and (current is None or when <= current))
        or (b"LT" in flags and current is not None and when >= current)
    ):
        return 0
    ks.expire_ms(key, when)
    return 1


@table.command("expire", -3, ("write", "fast"), first_key=1, last_key=1, key_step=1)
def expire(session: Session, argv: list[bytes]) -> object:
    """Set a key's time to live in seconds."""
    return _expire(session, argv, unit_ms=1000, absolute=False)


@table.command("pexpire", -3, ("write", "fast"), first_key=1, last_key=1, key_step=1)
def pexpire(session: Session, argv: list[bytes]) -> object:
    """Set a key's time to live in milliseconds."""
    return _expire(session, argv, unit_ms=1, absolute=False)


@table.command("expireat", -3, ("write", "fast"), first_key=1, last_key=1, key_step=1)
def expireat(session: Session, argv: list[bytes]) -> object:
    """Set the expiration for a key as a UNIX timestamp."""
    return _expire(session, argv, unit_ms=1000, absolute=True)


@table.command("pexpireat", -3, ("write", "fast"), first_key=1, last_key=1, key_step=1)
def pexpireat(session: Session, argv: list[bytes]) -> object:
    """Set the expiration for a key as a UNIX timestamp specified in milliseconds."""
    return _expire(session, argv, unit_ms=1, absolute=True)


def _ttl(session: Session, key: bytes, *, ms: bool, absolute: bool) -> int:
    ks = _ks(session)
    if ks.cache.probe(key) is None:  # Redis counts this lookup as a hit or a miss
        return -2
    when = ks.deadline_ms(key)
    if when is None:
        return -1
    left = when if absolute else max(0, when - ks.now_ms())
    return left if ms else (left + 500) // 1000


@table.command("ttl", 2, ("readonly", "fast"), first_key=1, last_key=1, key_step=1)
def ttl(session: Session, argv: list[bytes]) -> object:
    """Get the time to live for a key in seconds."""
    return _ttl(session, argv[1], ms=False, absolute=False)


@table.command("pttl", 2, ("readonly", "fast"), first_key=1, last_key=1, key_step=1)
def pttl(session: Session, argv: list[bytes]) -> object:
    """Get the time to live for a key in milliseconds."""
    return _ttl(session, argv[1], ms=True, absolute=False)


@table.command("expiretime", 2, ("readonly", "fast"), first_key=1, last_key=1, key_step=1)
def expiretime(session: Session, argv: list[bytes]) -> object:
    """Get the expiration Unix timestamp for a key."""
    return _ttl(session, argv[1], ms=False, absolute=True)


@table.command("pexpiretime", 2, ("readonly", "fast"), first_key=1, last_key=1, key_step=1)
def pexpiretime(session: Session, argv: list[bytes]) -> object:
    """Get the expiration Unix timestamp for a key in milliseconds."""
    return _ttl(session, argv[1], ms=True, absolute=True)


@table.command("persist", 2, ("write", "fast"), first_key=1, last_key=1, key_step=1)
def persist(session: Session, argv: list[bytes]) -> object:
    """Remove the expiration from a key."""
    ks = _ks(session)
    if ks.cache.touch(argv[1]) is None or ks.deadline_ms(argv[1]) is None:
        return 0
    ks.expire_ms(argv[1], None)
    return 1
