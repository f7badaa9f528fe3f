"""The server's keyspace: one `LRUCache` plus what Redis commands need around it.

Every command handler in `commands_*.py` reaches this object as `session.server_state`.
It adds to the embedded cache the few things only the server needs:

- milliseconds: Redis speaks Unix milliseconds (`PXAT`, `PEXPIRETIME`), the cache keeps
  float seconds on its clock; `now_ms`, `deadline_ms` and `store_ms` translate;
- Redis's out-of-memory error: `OutOfMemory` from the cache becomes `-OOM …`;
- SCAN cursors (see `scan`);
- tags that remember how a value was made, for OBJECT ENCODING (`TAG_RAW`, `TAG_STRING`).

Why SCAN keeps snapshots: Redis's cursor walks its hash table's buckets in reverse-bit
order, which survives rehashing and guarantees that a key present for the whole scan is
returned at least once. A Python dict offers no buckets, and a position in its order
shifts when an earlier key is deleted. So cursor 0 copies the key list once (O(n) for the
whole iteration, O(COUNT) per call), and the cursor encodes (snapshot id, offset). Keys
deleted since are skipped; keys added since may be missed, which Redis allows too.

Simpler than the real thing: one database (SELECT 0 only), no keyspace notifications.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from kvcache.cache import LRUCache, OutOfMemory
from kvcache.eviction import NOEVICTION
from minisys.resp.engine import ERR_OOM
from minisys.resp.values import CommandError

# Tags stored with a value whose OBJECT ENCODING its bytes cannot tell (commands_object.py):
TAG_RAW = "raw"  # edited in place (APPEND to an existing key, SETRANGE): always raw
TAG_STRING = "string"  # made as a string (INCRBYFLOAT): embstr or raw by length, never int

# Live SCAN iterations remembered at once; an older one restarts from a fresh snapshot.
MAX_SCAN_SNAPSHOTS = 64
# Keys held by all snapshots together (8 bytes each): oldest snapshots go first past it.
MAX_SNAPSHOT_KEYS = 4_000_000
# The offset takes the cursor's low 32 bits, the snapshot id the bits above.
_OFFSET_BITS = 32
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1


class Keyspace:
    """The cache as the RESP commands see it."""

    def __init__(self, cache: LRUCache, clock: Callable[[], float]) -> None:
        self.cache = cache
        self.clock = clock
        self._snapshots: OrderedDict[int, list[bytes]] = OrderedDict()
        self._next_snapshot = 1
        self._snapshot_keys = 0

    # --- time in Redis's unit ---------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def deadline_ms(self, key: bytes) -> int | None:
        """The key's absolute deadline in Unix ms; None without TTL; KeyError if absent."""
        deadline = self.cache.deadline(key)
        return None if deadline is None else round(deadline * 1000)

    # --- writes -------------------------------------------------------------------------

    def store(
        self, key: bytes, value: bytes, *, keep_ttl: bool = False, tag: str | None = None
    ) -> None:
        """SET without expiry (clears the TTL unless keep_ttl), or -OOM. `tag`: how the
        value was made, when OBJECT ENCODING cannot tell from the bytes (see below)."""
        try:
            self.cache.store(key, value, keep_ttl=keep_ttl, tag=tag)
        except OutOfMemory:
            raise CommandError(ERR_OOM) from None

    def store_ms(
        self, key: bytes, value: bytes, deadline_ms: int, *, tag: str | None = None
    ) -> None:
        """SET with an absolute deadline in Unix ms, or -OOM."""
        try:
            self.cache.store(key, value, deadline_ms / 1000, tag=tag)
        except OutOfMemory:
            raise CommandError(ERR_OOM) from None

    def store_many(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """MSET: every pair or none. Under noeviction a batch that cannot fit whole is
        refused up front; other policies make room key by key."""
        cache = self.cache
        if cache.policy == NOEVICTION and not cache.room_for(pairs):
            raise CommandError(ERR_OOM)
        for key, value in pairs:
            self.store(key, value)

    def expire_ms(self, key: bytes, deadline_ms: int | None) -> bool:
        return self.cache.expire_at(key, None if deadline_ms is None else deadline_ms / 1000)

    def check_room(self) -> None:
        """Redis refuses a growing write up front when over maxmemory under noeviction."""
        if self.cache.refuses_writes():
            raise CommandError(ERR_OOM)

    # --- SCAN ---------------------------------------------------------------------------

    @property
    def open_scans(self) -> int:
        """SCAN iterations started and not finished (each holds a key snapshot)."""
        return len(self._snapshots)

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """Up to `count` keys from the iteration `cursor` names, and the next cursor."""
        snapshot_id, offset = cursor >> _OFFSET_BITS, cursor & _OFFSET_MASK
        keys = self._snapshots.get(snapshot_id) if cursor else None
        if keys is None:
            keys = self.cache.key_snapshot()
            snapshot_id = self._next_snapshot
            self._next_snapshot += 1
            self._snapshot_keys += len(keys)
            while self._snapshots and (
                len(self._snapshots) >= MAX_SCAN_SNAPSHOTS
                or self._snapshot_keys > MAX_SNAPSHOT_KEYS
            ):
                self._snapshot_keys -= len(self._snapshots.popitem(last=False)[1])
        self._snapshots[snapshot_id] = keys
        self._snapshots.move_to_end(snapshot_id)
        batch = [k for k in keys[offset : offset + count] if k in self.cache]
        offset += count
        if offset >= len(keys) or offset > _OFFSET_MASK:
            self._snapshot_keys -= len(self._snapshots.pop(snapshot_id))
            return 0, batch
        return (snapshot_id << _OFFSET_BITS) | offset, batch
