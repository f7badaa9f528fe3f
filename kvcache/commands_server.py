"""Server-wide commands and views: DBSIZE, FLUSHDB/FLUSHALL, INFO sections, CONFIG params.

On the request's journey these are what an operator or a learner types to look at the
cache as a whole: `INFO stats` for hits and misses, `INFO memory` for the byte estimate,
`CONFIG SET maxmemory 10mb` to watch eviction start. The RESP engine owns INFO and CONFIG
themselves; this module plugs kvcache's sections and parameters into them
(`install_info_and_config`).

`maxmemory` takes Redis's units (memtoull): a plain number of bytes, or `k`/`m`/`g` for
powers of 1000 and `kb`/`mb`/`gb` for powers of 1024, any case: `64mb` = 67108864.

Simpler than the real thing: `used_memory` is the cache's estimate of its keys and values
(entry.py's ENTRY_OVERHEAD), not the allocator's count of the whole process; the process's
real footprint is `used_memory_rss` next to it.
"""

from __future__ import annotations

import os
import re

from kvcache.eviction import POLICIES
from kvcache.keyspace import Keyspace
from minisys.resp.engine import ERR_SYNTAX, CommandTable, Engine, Session
from minisys.resp.values import CommandError, SimpleString

OK = SimpleString("OK")
_UNITS = {
    b"": 1,
    b"b": 1,
    b"k": 1000,
    b"kb": 1024,
    b"m": 1000**2,
    b"mb": 1024**2,
    b"g": 1000**3,
    b"gb": 1024**3,
}
_MEMORY = re.compile(rb"(\d+)([a-z]*)")

table = CommandTable()


def parse_memory(text: bytes | str) -> int:
    """Redis's memtoull: "64mb" → 67108864; ValueError on anything else."""
    raw = text.encode() if isinstance(text, str) else text
    m = _MEMORY.fullmatch(raw.strip().lower())
    if m is None or m.group(2) not in _UNITS:
        raise ValueError("argument must be a memory value")
    return int(m.group(1)) * _UNITS[m.group(2)]


def human_bytes(n: int) -> str:
    """Redis's bytesToHuman: 1.50M, 64.00M, 512B."""
    for unit, size in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n}B"


@table.command("dbsize", 1, ("readonly", "fast"))
def dbsize(session: Session, argv: list[bytes]) -> object:
    """Return the number of keys in the selected database."""
    return len(session.server_state.cache)


def _flush(session: Session, argv: list[bytes]) -> object:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"async", b"sync")):
        raise CommandError(ERR_SYNTAX)
    session.server_state.cache.clear()
    return OK


@table.command("flushdb", -1, ("write",))
def flushdb(session: Session, argv: list[bytes]) -> object:
    """Remove all keys from the current database."""
    return _flush(session, argv)


@table.command("flushall", -1, ("write",))
def flushall(session: Session, argv: list[bytes]) -> object:
    """Remove all keys from all databases."""
    return _flush(session, argv)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def install_info_and_config(engine: Engine, ks: Keyspace) -> None:
    """Add kvcache's INFO sections and CONFIG parameters to `engine`."""
    cache = ks.cache

    def memory() -> dict[str, object]:
        return {
            "used_memory": cache.used_bytes,
            "used_memory_human": human_bytes(cache.used_bytes),
            "used_memory_rss": _rss(),
            "maxmemory": cache.max_bytes,
            "maxmemory_human": human_bytes(cache.max_bytes),
            "maxmemory_policy": cache.policy,
            "maxmemory_keys": cache.max_keys,
        }

    def stats() -> dict[str, object]:
        return {
            "total_connections_received": engine.total_connections,
            "total_commands_processed": engine.total_commands,
            "expired_keys": cache.expirations,
            "evicted_keys": cache.evictions,
            "keyspace_hits": cache.hits,
            "keyspace_misses": cache.misses,
        }

    def keyspace() -> dict[str, object]:
        s = cache.stats()
        if not s.keys:
            return {}
        return {"db0": f"keys={s.keys},expires={s.volatile_keys},avg_ttl=0"}

    engine.info.add("memory", memory)
    engine.info.add("stats", stats)
    engine.info.add("keyspace", keyspace)

    def set_maxmemory(value: bytes) -> None:
        cache.configure(max_bytes=parse_memory(value))

    def set_policy(value: bytes) -> None:
        policy = value.decode("utf-8", "replace").lower()
        if policy not in POLICIES:
            raise ValueError("argument(s) must be one of the following: " + ", ".join(POLICIES))
        cache.configure(policy=policy)

    engine.config.add("maxmemory", get=lambda: cache.max_bytes, set=set_maxmemory)
    engine.config.add("maxmemory-policy", get=lambda: cache.policy, set=set_policy)
    engine.config.add("maxmemory-samples", 5)
