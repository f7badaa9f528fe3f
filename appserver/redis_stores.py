"""The cache and the database over RESP: kvcache and minidb, or a real Redis for either.

Both stores speak the same protocol, so one small class does the talking (`_RespStore`)
and two thin ones give it the shape the shop expects.

Plain commands from every concurrent request share **one multiplexed connection**: the
client queues each command and writes everything queued in one turn of the event loop
at once; the replies come back in order (RESP guarantees it), so thirty requests in
flight are thirty pipelined commands in one write on one socket. The server then reads
them in one wakeup and answers them in one write — far fewer system calls on both sides
than one connection (or one write) per request, which matters most when the server is
Python (kvcache, minidb). StackExchange.Redis and Lettuce work this way; redis-py does not.

A transaction cannot share: WATCH and MULTI are per-connection state. It borrows a
connection of its own from a small `RespPool`:

    async with db.transaction() as tx:     borrow a connection from the pool
        await tx.watch(["stock:sku-1"])    WATCH stock:sku-1 + MGET stock:sku-1, pipelined
        await tx.execute([...])            MULTI, the writes, EXEC in one pipeline
                                           (one round trip); EXEC → nil means "conflict"
    (leaving without EXEC sends UNWATCH, so the next borrower starts clean)

Errors are translated at this border: a refused, reset or timed-out connection becomes
`StoreUnavailable` (503 upstream, retry), an error reply becomes `StoreError` (500).

Read next: `stores.py` (the interfaces), `beanstalk_queue.py` (the third store).

Simpler than the real thing: redis-py's Redis class has every command and connection
health checks; we have the dozen commands the shop uses.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from appserver.stores import Op, StoreError, StoreUnavailable
from minisys.resp.client import RespClient, RespConnectionError, RespPool
from minisys.resp.values import RespError

# Connections for transactions, each held for one WATCH … EXEC (two round trips). More
# than a load test's usual 32 concurrent orders, so orders never queue for a connection.
POOL_SIZE = 64
# SCAN's COUNT hint: keys examined per call; bigger means fewer round trips per listing.
SCAN_COUNT = 1000
# A SCAN walk stops after this many keys, so one listing is bounded work.
MAX_SCAN_KEYS = 100_000


class _RespStore:
    name = "store"

    def __init__(
        self, host: str, port: int, db: int, *, timeout: float, pool_size: int = POOL_SIZE
    ) -> None:
        self.address = f"{host}:{port}"
        self.url = f"redis://{host}:{port}/{db}"
        self.timeout = timeout
        self.pool = RespPool(
            self.url, size=pool_size, connect_timeout=timeout, read_timeout=timeout
        )
        self._shared: RespClient | None = None
        self._connecting: asyncio.Future[RespClient] | None = None

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(self.name, f"{self.address}: {exc}")

    async def _connection(self) -> tuple[RespClient, bool]:
        """The shared connection, and whether it was opened just now for this call."""
        shared = self._shared
        if shared is not None and not shared.closed:
            return shared, False
        # Everyone who finds it missing waits for the same connect.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(
                RespClient.from_url(
                    self.url, connect_timeout=self.timeout, read_timeout=self.timeout
                )
            )
        self._shared = await asyncio.shield(self._connecting)
        return self._shared, True

    async def _execute(self, *args: str | bytes | int) -> object:
        try:
            client = self._shared
            if client is not None and not client.closed:
                fresh = False  # the usual case, without awaiting _connection()
            else:
                client, fresh = await self._connection()
            try:
                return await client.execute(*args)
            except RespConnectionError:
                # An idle connection the server closed (idle timeout, restart) fails on
                # first use. Retry once on a new one, unless the command is not safe to
                # repeat (INCRBY may have run) or the connection was new anyway.
                if fresh or args[0] == "INCRBY":
                    raise
            client, _ = await self._connection()
            return await client.execute(*args)
        except RespError as exc:
            raise StoreError(f"{self.name} {args[0]}: {exc}") from None
        except (RespConnectionError, OSError) as exc:
            raise self._unavailable(exc) from None

    async def get(self, key: str) -> bytes | None:
        return await self._execute("GET", key)  # type: ignore[return-value]

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return await self._execute("MGET", *keys)  # type: ignore[return-value]

    async def ping(self) -> None:
        await self._execute("PING")

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()
        await self.pool.close()


class RedisCache(_RespStore):
    name = "cache"

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._execute("SET", key, value, "PX", max(1, math.ceil(ttl * 1000)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._execute("DEL", *keys)


class RedisDb(_RespStore):
    name = "db"

    async def set(self, key: str, value: bytes, *, only_if_absent: bool = False) -> bool:
        reply = await self._execute("SET", key, value, *(["NX"] if only_if_absent else []))
        return reply is not None

    async def delete(self, *keys: str) -> int:
        return await self._execute("DEL", *keys) if keys else 0  # type: ignore[return-value]

    async def incr(self, key: str, by: int = 1) -> int:
        return await self._execute("INCRBY", key, by)  # type: ignore[return-value]

    async def scan(self, match: str) -> list[str]:
        """Every key matching the glob, by walking SCAN's cursor to 0 (keys may repeat in
        SCAN's replies: Redis promises "at least once", so we dedupe)."""
        cursor: bytes = b"0"
        found: dict[str, None] = {}
        while True:
            reply = await self._execute("SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT)
            cursor, keys = reply  # type: ignore[misc]
            found.update(dict.fromkeys(k.decode() for k in keys))
            if cursor in (b"0", 0) or len(found) >= MAX_SCAN_KEYS:
                return list(found)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[RespTransaction]:
        try:
            async with self.pool.connection() as conn:
                tx = RespTransaction(conn)
                try:
                    yield tx
                finally:
                    await tx.finish()
        except (RespConnectionError, OSError) as exc:
            raise self._unavailable(exc) from None


class RespTransaction:
    def __init__(self, conn: RespClient) -> None:
        self.conn = conn
        self.watching = False

    async def watch(self, keys: Sequence[str]) -> list[bytes | None]:
        """WATCH and MGET in one pipeline: one round trip instead of two, and a shorter
        window in which another writer can make our EXEC fail."""
        self.watching = True
        watched, values = await self.conn.pipeline([("WATCH", *keys), ("MGET", *keys)])
        for reply in (watched, values):
            if isinstance(reply, RespError):
                raise StoreError(f"db WATCH/MGET: {reply}")
        return values  # type: ignore[return-value]

    async def execute(
        self, ops: Sequence[Op], *, on_sent: Callable[[], None] | None = None
    ) -> list[object] | None:
        replies = await self.conn.pipeline([("MULTI",), *ops, ("EXEC",)], on_sent=on_sent)
        self.watching = False  # EXEC (or its error) always ends the WATCH
        errors = [r for r in replies if isinstance(r, RespError)]
        if errors:
            raise StoreError(f"db transaction failed: {errors[0]}")
        return replies[-1]  # type: ignore[return-value]

    async def finish(self) -> None:
        """Leave the connection as we found it: no WATCH left behind for the next user."""
        if self.watching and not self.conn.closed:
            try:
                await self.conn.execute("UNWATCH")
            except (RespError, RespConnectionError):
                self.conn.abort()
