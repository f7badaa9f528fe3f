"""The three stores the shop talks to, as small async interfaces, and how URLs pick them.

On the request's journey the appserver is where the lessons meet: it reads through a
cache, commits to a database and hands work to a queue. The shop's code (users, products,
orders) never sees a socket; it sees these three interfaces:

    Cache   kvcache (or a real Redis): get / mget / set with a TTL / delete.
            Volatile and optional: losing it makes us slower, never wrong.
    Db      minidb (or a real Redis): get / mget / set / incr / scan, plus optimistic
            transactions (WATCH the keys you read, MULTI … EXEC the writes, and EXEC
            refuses if anyone wrote a watched key in between).
    Queue   mq (or a real beanstalkd): put a job on a tube.

Each is chosen by a URL on the command line, so a learner can swap our server for the
real product and watch the shop keep working:

    redis://127.0.0.1:6380/0       a RESP server (kvcache, minidb, redis-server)
    beanstalk://127.0.0.1:11301    a beanstalkd-protocol server (mq, beanstalkd)
    memory://                      in-process fakes (tests, a quick demo without servers)

Failures are reported in two words the HTTP layer understands: `StoreUnavailable` (cannot
reach it, timed out: answer 503 and let the client retry) and `StoreError` (it answered
something we did not expect: a bug, answer 500).

Read next: `memory.py` (the fakes, the simplest implementation of these interfaces),
`redis_stores.py` and `beanstalk_queue.py` (the real clients), `cache_aside.py`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

# One write inside MULTI … EXEC, spelled as the Redis command it becomes:
# ("DECRBY", "stock:sku-1", "2"), ("MSET", "order:7", "{…}", "outbox:7", "{…}"),
# ("DEL", "outbox:6").
Op = tuple[str, ...]

# Commands a transaction may queue. The in-memory fake implements exactly these, so the
# list doubles as documentation of what the shop asks of its database.
TRANSACTION_COMMANDS = frozenset({"SET", "MSET", "DEL", "INCRBY", "DECRBY"})


class StoreUnavailable(Exception):
    """A store could not be reached or did not answer in time (→ 503, retry later)."""

    def __init__(self, store: str, detail: str) -> None:
        super().__init__(f"{store} unavailable: {detail}")
        self.store = store
        self.detail = detail


class StoreError(Exception):
    """A store answered, but not as expected (an error reply, a wrong type) (→ 500)."""


class Cache(Protocol):
    """A volatile key/value cache with per-key expiry (kvcache, Redis)."""

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]: ...
    async def set(self, key: str, value: bytes, ttl: float) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class Transaction(Protocol):
    """One optimistic transaction on one connection: WATCH, read, then EXEC or give up."""

    async def watch(self, keys: Sequence[str]) -> list[bytes | None]:
        """WATCH the keys and read them (MGET): the values the decision is based on."""
        ...

    async def execute(
        self, ops: Sequence[Op], *, on_sent: Callable[[], None] | None = None
    ) -> list[object] | None:
        """MULTI, the ops, EXEC: their replies, or None if a watched key changed.
        `on_sent` is called once they are on their way, before the reply."""
        ...


class Db(Protocol):
    """The durable store of record (minidb, Redis)."""

    async def get(self, key: str) -> bytes | None: ...
    async def mget(self, keys: Sequence[str]) -> list[bytes | None]: ...
    async def set(self, key: str, value: bytes, *, only_if_absent: bool = False) -> bool: ...
    async def delete(self, *keys: str) -> int: ...
    async def incr(self, key: str, by: int = 1) -> int: ...
    async def scan(self, match: str) -> list[str]: ...
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class Queue(Protocol):
    """A work queue (mq, beanstalkd): put a job on a tube, get its id."""

    async def put(self, tube: str, body: bytes, *, ttr: int, pri: int = 1024) -> int: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


@dataclass
class Stores:
    """The three stores of one appserver process."""

    cache: Cache
    db: Db
    queue: Queue

    async def close(self) -> None:
        for store in (self.cache, self.db, self.queue):
            await store.close()


@dataclass(frozen=True)
class StoreUrl:
    scheme: str
    host: str
    port: int
    db: int


DEFAULT_PORTS = {"redis": 6379, "beanstalk": 11300, "memory": 0}


def parse_store_url(url: str) -> StoreUrl:
    """Split `redis://host:port/db`, `beanstalk://host:port` or `memory://`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"unsupported store URL {url!r}: use redis://, beanstalk:// or memory://")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ValueError(f"bad port in store URL {url!r}") from exc
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"bad database number in store URL {url!r}")
    return StoreUrl(parts.scheme, parts.hostname or "127.0.0.1", port, int(path or 0))


def check_store_urls(cache_url: str, db_url: str, queue_url: str) -> list[StoreUrl]:
    """Parse the three URLs, or raise ValueError naming the flag that is wrong."""
    parsed = []
    for flag, url, allowed in (
        ("--cache", cache_url, ("redis", "memory")),
        ("--db", db_url, ("redis", "memory")),
        ("--queue", queue_url, ("beanstalk", "memory")),
    ):
        at = parse_store_url(url)
        if at.scheme not in allowed:
            raise ValueError(f"{flag} must be one of {', '.join(s + '://' for s in allowed)}")
        parsed.append(at)
    return parsed


def open_stores(cache_url: str, db_url: str, queue_url: str, *, timeout: float = 2.0) -> Stores:
    """Build the three store clients from URLs. Nothing connects until first use."""
    from appserver import beanstalk_queue, memory, redis_stores

    cache_at, db_at, queue_at = check_store_urls(cache_url, db_url, queue_url)
    cache: Cache = (
        memory.MemoryCache()
        if cache_at.scheme == "memory"
        else redis_stores.RedisCache(cache_at.host, cache_at.port, cache_at.db, timeout=timeout)
    )
    db: Db = (
        memory.MemoryDb()
        if db_at.scheme == "memory"
        else redis_stores.RedisDb(db_at.host, db_at.port, db_at.db, timeout=timeout)
    )
    queue: Queue = (
        memory.MemoryQueue()
        if queue_at.scheme == "memory"
        else beanstalk_queue.BeanstalkQueue(queue_at.host, queue_at.port, timeout=timeout)
    )
    return Stores(cache, db, queue)
