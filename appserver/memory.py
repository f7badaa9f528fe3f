"""In-process stand-ins for the cache, the database and the queue (`memory://` URLs).

They implement the interfaces of `stores.py` with plain dicts, so the shop's business rules
can be tested (and demonstrated) without starting a server. They are faithful where the
rules depend on it:

- `MemoryDb` versions every key; a transaction remembers the versions of the keys it
  WATCHed and EXEC refuses (returns None) if any changed, exactly like Redis's optimistic
  locking. Between `watch` and `execute` other tasks may run, so tests can provoke the
  conflict a real server would see.
- Every fake has a `down` switch: while it is on, each call raises `StoreUnavailable`, the
  way a refused connection surfaces from a real client.
- `MemoryCache` takes a `clock`, so a test can move time past a TTL without sleeping.

Read next: `cache_aside.py` and `orders.py`, which run unchanged on these and on the real
servers.

Simpler than the real thing: no eviction, no persistence, one process only.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from appserver.stores import TRANSACTION_COMMANDS, Op, StoreError, StoreUnavailable


class _Switch:
    """The `down` switch shared by every fake."""

    name = "store"

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable(self.name, "connection refused (memory store switched off)")


class MemoryCache(_Switch):
    name = "cache"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.data: dict[str, tuple[bytes, float]] = {}

    async def get(self, key: str) -> bytes | None:
        self._check()
        entry = self.data.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self.data[key]
            return None
        return entry[0]

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._check()
        self.data[key] = (value, self.clock() + ttl)

    async def delete(self, *keys: str) -> None:
        self._check()
        for key in keys:
            self.data.pop(key, None)

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        return None


class MemoryDb(_Switch):
    name = "db"

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, bytes] = {}
        # Bumped on every write of a key (including deletes): what WATCH compares.
        self.versions: dict[str, int] = {}
        self._next_version = itertools.count(1)
        # Test seam: awaited inside `execute` just before the versions are checked, so a
        # test can sneak in a concurrent write and watch the transaction retry.
        self.before_exec: Callable[[], object] | None = None

    def _write(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        self.versions[key] = next(self._next_version)

    async def get(self, key: str) -> bytes | None:
        self._check()
        return self.data.get(key)

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check()
        return [self.data.get(key) for key in keys]

    async def set(self, key: str, value: bytes, *, only_if_absent: bool = False) -> bool:
        self._check()
        if only_if_absent and key in self.data:
            return False
        self._write(key, value)
        return True

    async def delete(self, *keys: str) -> int:
        self._check()
        present = [key for key in keys if key in self.data]
        for key in present:
            self._write(key, None)
        return len(present)

    async def incr(self, key: str, by: int = 1) -> int:
        self._check()
        return self._apply(("INCRBY", key, str(by)))  # type: ignore[return-value]

    async def scan(self, match: str) -> list[str]:
        self._check()
        return [key for key in self.data if fnmatch.fnmatchcase(key, match)]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        self._check()
        yield MemoryTransaction(self)

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        return None

    def _apply(self, op: Op) -> object:
        """Run one write command, as the server would inside EXEC."""
        name, key, *args = op
        if name == "SET":
            self._write(key, args[0].encode() if isinstance(args[0], str) else args[0])
            return b"OK"
        if name == "MSET":
            if len(args) % 2 != 1:
                raise StoreError("ERR wrong number of arguments for 'mset' command")
            pairs = (key, *args)
            for k, value in zip(pairs[::2], pairs[1::2], strict=True):
                self._write(k, value.encode() if isinstance(value, str) else value)
            return b"OK"
        if name == "DEL":
            present = [k for k in (key, *args) if k in self.data]
            for k in present:
                self._write(k, None)
            return len(present)
        if name in ("INCRBY", "DECRBY"):
            try:
                current = int(self.data.get(key, b"0"))
            except ValueError:
                raise StoreError("ERR value is not an integer or out of range") from None
            step = int(args[0]) * (1 if name == "INCRBY" else -1)
            self._write(key, str(current + step).encode())
            return current + step
        raise StoreError(f"command {name} not supported in a transaction")


@dataclass
class MemoryTransaction:
    db: MemoryDb
    watched: dict[str, int] = field(default_factory=dict)

    # Each step yields to the event loop first, as a network round trip would, so that
    # concurrent transactions in a test really interleave between WATCH and EXEC.

    async def watch(self, keys: Sequence[str]) -> list[bytes | None]:
        await asyncio.sleep(0)
        self.db._check()
        for key in keys:
            self.watched.setdefault(key, self.db.versions.get(key, 0))
        return await self.db.mget(keys)

    async def execute(
        self, ops: Sequence[Op], *, on_sent: Callable[[], None] | None = None
    ) -> list[object] | None:
        await asyncio.sleep(0)
        self.db._check()
        for op in ops:
            if op[0] not in TRANSACTION_COMMANDS:
                raise StoreError(f"command {op[0]} not supported in a transaction")
        if self.db.before_exec is not None:
            hook, self.db.before_exec = self.db.before_exec, None
            result = hook()
            if hasattr(result, "__await__"):
                await result  # type: ignore[misc]
        changed = any(self.db.versions.get(k, 0) != v for k, v in self.watched.items())
        self.watched.clear()
        if on_sent is not None:
            on_sent()  # a server has the EXEC now: it runs before anything sent later
        if changed:
            return None
        # No await from here on: the writes land together, as EXEC makes them.
        return [self.db._apply(op) for op in ops]


@dataclass
class Job:
    id: int
    tube: str
    body: bytes
    ttr: int
    pri: int


class MemoryQueue(_Switch):
    name = "queue"

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[Job] = []
        self._ids = itertools.count(1)

    async def put(self, tube: str, body: bytes, *, ttr: int, pri: int = 1024) -> int:
        self._check()
        job = Job(next(self._ids), tube, body, ttr, pri)
        self.jobs.append(job)
        return job.id

    def bodies(self, tube: str) -> list[bytes]:
        return [job.body for job in self.jobs if job.tube == tube]

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        return None
