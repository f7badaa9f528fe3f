"""A write set: what one command (or one MULTI/EXEC) reads and is about to write.

Journey: every data command in `commands.py` runs against a `WriteSet` instead of the db.
Reads go through to the engine unless the same command or transaction already wrote the
key; writes are only buffered. When the command (or EXEC) is done, `server.py` hands the
buffered ops to `DB.apply` as ONE atomic batch. That single mechanism gives us:

- `MSET a 1 b 2` and `DEL a b` are atomic in the log for free (one batch each);
- `MULTI; SET a 1; INCR a; EXEC` sees its own write (the INCR reads the buffered "1"), and
  the whole transaction is one BATCH...COMMIT run on disk: after a crash, all or nothing;
- a command that fails half-way (`ERR value is not an integer`) wrote nothing, since its
  ops are dropped with the write set.

It is not a lock and not isolation: in the server every command runs to completion on the
event loop before the next one starts, which already makes each command and each EXEC
atomic with respect to other clients (Redis's reasoning too).

Simpler than the real thing: Redis mutates its dict in place and propagates commands to
the AOF afterwards; an explicit write set is easier to follow and to make atomic on disk.
"""

from __future__ import annotations

from .engine import DB, FLUSH, Op


class WriteSet:
    """A read-through, write-buffering view of a DB."""

    def __init__(self, db: DB) -> None:
        self.db = db
        self.overlay: dict[bytes, bytes | None] = {}  # None = deleted here
        self.flushed = False
        self.ops: list[Op] = []
        self.touched: set[bytes] = set()  # keys whose WATCHers must be told

    def get(self, key: bytes) -> bytes | None:
        if key in self.overlay:
            return self.overlay[key]
        return None if self.flushed else self.db.get(key)

    def exists(self, key: bytes) -> bool:
        if key in self.overlay:
            return self.overlay[key] is not None
        return not self.flushed and key in self.db

    def put(self, key: bytes, value: bytes) -> None:
        self.overlay[key] = value
        self.ops.append((key, value))
        self.touched.add(key)

    def delete(self, key: bytes) -> bool:
        """Delete `key` if it exists; True if it did."""
        if not self.exists(key):
            return False
        self.overlay[key] = None
        self.ops.append((key, None))
        self.touched.add(key)
        return True

    def flush(self) -> None:
        """FLUSHALL: every key that existed so far is gone."""
        if not self.flushed:
            self.touched.update(self.db.keys())
        self.touched.update(k for k, v in self.overlay.items() if v is not None)
        self.overlay.clear()
        self.flushed = True
        self.ops.append(FLUSH)

    def all_keys(self) -> list[bytes]:
        if not self.overlay and not self.flushed:
            return self.db.keys()
        base = set() if self.flushed else set(self.db.keys())
        for key, value in self.overlay.items():
            if value is None:
                base.discard(key)
            else:
                base.add(key)
        return list(base)

    def size(self) -> int:
        if not self.overlay and not self.flushed:
            return len(self.db)
        return len(self.all_keys())
