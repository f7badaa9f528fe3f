"""OBJECT ENCODING, REFCOUNT, IDLETIME, FREQ and HELP: how Redis would hold a value.

On the request's journey these answer nobody's order: they are what a learner (or an
operator chasing memory) types to look inside the cache, `OBJECT ENCODING stock:42` or
`OBJECT IDLETIME user:7`. Replies and error strings are Redis 7.0's, checked against a
real redis-server by tests/kvcache/test_kvcache_object.py.

ENCODING. Redis picks a string's encoding when it stores it and changes it when a
command edits the string in place:

| how the value was written                          | encoding                          |
|----------------------------------------------------|-----------------------------------|
| SET, MSET, SETNX, GETSET, INCR…, APPEND to a       | `int` if it reads as a 64-bit     |
| missing key (Redis's tryObjectEncoding)            | integer, `embstr` up to 44 bytes, |
|                                                    | `raw` above                       |
| INCRBYFLOAT (createStringObject)                   | `embstr` up to 44 bytes, `raw`    |
|                                                    | above; never `int` (even "2")     |
| APPEND to an existing key, SETRANGE (in place)     | `raw`                             |
| RENAME                                             | unchanged: the same object moves  |

We store plain bytes, so the last rows are remembered as a tag on the cache entry
(`TAG_STRING`, `TAG_RAW` in keyspace.py), which the next plain write clears.

REFCOUNT. 1, except for the integers 0 to 9999: Redis keeps one shared object for each
(refcount INT_MAX), unless `maxmemory` is set with an LRU policy, whose per-object access
time a shared object would spoil.

IDLETIME. Whole seconds since the key was last used, on the LRU clock (entry.py). What
counts as a use is Redis's: reads (GET, MGET, STRLEN, GETRANGE, TOUCH, GETEX…) and the
write lookups of SET NX/XX, SETNX, INCR…, APPEND, SETRANGE, EXPIRE…, PERSIST, RENAME;
EXISTS, TYPE, the TTL family, SCAN, KEYS and OBJECT itself are not.

Every OBJECT lookup counts a keyspace hit or miss and none touches the key (Redis's
LOOKUP_NOTOUCH); a missing key answers a null.

Simpler than the real thing: in Redis a shared integer has one access time for all the
keys holding it, so IDLETIME of `SET k 5` tells the last use of any key holding 5; ours
is per key. REFCOUNT's sharing rule is applied when asked, where Redis applies it when
the value is written (they differ only across a CONFIG SET in between). No LFU policies,
so FREQ always answers its error.
"""

from __future__ import annotations

from kvcache.eviction import ALLKEYS_LRU, VOLATILE_LRU
from kvcache.keyspace import TAG_RAW, Keyspace
from minisys.resp.codec import strict_int
from minisys.resp.engine import CommandTable, Session
from minisys.resp.values import CommandError, SimpleString

table = CommandTable()

# Redis stores strings up to this many bytes in one block with their header ("embstr").
EMBSTR_LIMIT = 44
# The longest decimal a 64-bit integer takes ("-9223372036854775808"): longer is no int.
INT_DIGITS = 20
# Redis's OBJ_SHARED_INTEGERS: 0..9999 are shared objects...
SHARED_INTEGERS = 10_000
# ...whose refcount reads as OBJ_SHARED_REFCOUNT (INT_MAX).
SHARED_REFCOUNT = 2**31 - 1
# Policies that need a per-object access time, so Redis does not share integers under
# them once maxmemory is set (MAXMEMORY_FLAG_NO_SHARED_INTEGERS; the LFU ones too).
_UNSHARED_POLICIES = (ALLKEYS_LRU, VOLATILE_LRU)

ERR_FREQ = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. "
    "Please note that when switching between policies at runtime LRU and LFU data "
    "will take some time to adjust."
)
HELP = (
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
)


def _ks(session: Session) -> Keyspace:
    return session.server_state  # type: ignore[return-value]


def encoding_of(value: bytes, tag: str | None = None) -> bytes:
    """The encoding Redis would report for `value`, written as `tag` says (see above)."""
    if tag == TAG_RAW:
        return b"raw"
    # A TAG_STRING value was made as a string: it never becomes an int.
    if tag is None and len(value) <= INT_DIGITS and strict_int(value) is not None:
        return b"int"
    return b"embstr" if len(value) <= EMBSTR_LIMIT else b"raw"


def refcount_of(value: bytes, tag: str | None, *, maxmemory: int, policy: str) -> int:
    """Redis's refcount for a string value: INT_MAX for a shared small integer, else 1."""
    shareable = maxmemory == 0 or policy not in _UNSHARED_POLICIES
    if shareable and encoding_of(value, tag) == b"int" and 0 <= int(value) < SHARED_INTEGERS:
        return SHARED_REFCOUNT
    return 1


table.add("object", None, -2, ("slow",))


@table.subcommand("object", "encoding", 3, ("readonly",))
def object_encoding(session: Session, argv: list[bytes]) -> object:
    """Inspect the internal encoding of a Redis object."""
    cache = _ks(session).cache
    value = cache.probe(argv[2])
    return None if value is None else encoding_of(value, cache.tag(argv[2]))


@table.subcommand("object", "refcount", 3, ("readonly",))
def object_refcount(session: Session, argv: list[bytes]) -> object:
    """Get the number of references to the value of the key."""
    cache = _ks(session).cache
    value = cache.probe(argv[2])
    if value is None:
        return None
    return refcount_of(value, cache.tag(argv[2]), maxmemory=cache.max_bytes, policy=cache.policy)


@table.subcommand("object", "idletime", 3, ("readonly",))
def object_idletime(session: Session, argv: list[bytes]) -> object:
    """Get the time since a Redis object was last accessed."""
    cache = _ks(session).cache
    if cache.probe(argv[2]) is None:
        return None
    return cache.idle_time(argv[2])


@table.subcommand("object", "freq", 3, ("readonly",))
def object_freq(session: Session, argv: list[bytes]) -> object:
    """Get the logarithmic access frequency counter of a Redis object."""
    if _ks(session).cache.probe(argv[2]) is None:
        return None
    raise CommandError(ERR_FREQ)


@table.subcommand("object", "help", 2, ("loading", "stale"))
def object_help(session: Session, argv: list[bytes]) -> object:
    """Show helpful text about the different subcommands."""
    return [SimpleString(line) for line in HELP]
