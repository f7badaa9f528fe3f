"""One contract for every store implementation: the fakes, our servers, the real products.

The business-rule tests run on the in-memory fakes; they only prove something if the fakes
behave like the servers. So the same checks run on `memory://`, on minidb / kvcache / mq,
and (marked interop) on redis-server / beanstalkd — above all the one that matters most:
EXEC after a conflicting write returns nil and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from appserver.beanstalk_queue import BeanstalkQueue
from appserver.memory import MemoryCache, MemoryDb, MemoryQueue
from appserver.redis_stores import RedisCache, RedisDb
from minisys.testing import ServerProcess

KINDS = ["memory", "ours", pytest.param("real", marks=pytest.mark.interop)]


@pytest.fixture(scope="module", params=KINDS)
def ports(request, tmp_path_factory, real_servers):
    """(cache port, db port, queue port) for each kind; None for memory."""
    with contextlib.ExitStack() as running:
        if request.param == "memory":
            yield request.param, None
        elif request.param == "ours":
            tmp = tmp_path_factory.mktemp("stores")
            kv = running.enter_context(ServerProcess("kvcache"))
            db = running.enter_context(ServerProcess("minidb", "--data-dir", str(tmp / "db")))
            mq = running.enter_context(ServerProcess("mq", "--data-dir", str(tmp / "mq")))
            yield request.param, (kv.port, db.port, mq.port)
        else:
            redis, beanstalkd = real_servers
            r = running.enter_context(redis())
            b = running.enter_context(beanstalkd())
            yield request.param, (r.port, r.port, b.port)


def stores(ports):
    kind, p = ports
    if kind == "memory":
        return MemoryCache(), MemoryDb(), MemoryQueue()
    return (
        RedisCache("127.0.0.1", p[0], 0, timeout=5),
        RedisDb("127.0.0.1", p[1], 1 if kind == "real" else 0, timeout=5),
        BeanstalkQueue("127.0.0.1", p[2], timeout=5),
    )


def run_with(ports, scenario):
    async def main():
        cache, db, queue = stores(ports)
        try:
            return await scenario(cache, db, queue, uuid.uuid4().hex[:8] + ":")
        finally:
            for store in (cache, db, queue):
                await store.close()

    return asyncio.run(main())


def test_db_reads_and_writes(ports):
    async def scenario(cache, db, queue, p):
        assert await db.get(p + "a") is None
        assert await db.set(p + "a", b"1") is True
        assert await db.set(p + "a", b"2", only_if_absent=True) is False
        assert await db.mget([p + "a", p + "b"]) == [b"1", None]
        assert await db.incr(p + "n", 100) == 100 and await db.incr(p + "n") == 101
        assert await db.delete(p + "a", p + "b") == 1
        await db.ping()

    run_with(ports, scenario)


def test_db_scan_matches_a_glob(ports):
    async def scenario(cache, db, queue, p):
        for key in ("user-orders:1:7", "user-orders:1:8", "user-orders:12:9", "order:7"):
            await db.set(p + key, b"1")
        assert sorted(await db.scan(p + "user-orders:1:*")) == [
            p + "user-orders:1:7",
            p + "user-orders:1:8",
        ]

    run_with(ports, scenario)


def test_exec_commits_every_write_or_none(ports):
    async def scenario(cache, db, queue, p):
        await db.set(p + "stock", b"5")
        async with db.transaction() as tx:
            assert await tx.watch([p + "stock", p + "idem"]) == [b"5", None]
            replies = await tx.execute(
                [
                    ("DECRBY", p + "stock", "2"),
                    ("SET", p + "order", "x"),
                    ("DEL", p + "outbox:1", p + "outbox:2"),
                ]
            )
        assert replies is not None and replies[0] == 3
        assert await db.mget([p + "stock", p + "order"]) == [b"3", b"x"]

        async with db.transaction() as tx:
            await tx.watch([p + "stock"])
            await db.set(p + "stock", b"1")  # another client writes a watched key
            assert await tx.execute([("DECRBY", p + "stock", "1"), ("SET", p + "o2", "y")]) is None
        assert await db.mget([p + "stock", p + "o2"]) == [b"1", None]

    run_with(ports, scenario)


def test_mset_in_a_transaction_writes_every_pair(ports):
    """The order's documents go in one MSET inside EXEC (`orders.py`)."""

    async def scenario(cache, db, queue, p):
        async with db.transaction() as tx:
            await tx.watch([p + "stock"])
            replies = await tx.execute([("MSET", p + "order", "{}", p + "index", "1")])
        assert replies is not None and len(replies) == 1
        assert await db.mget([p + "order", p + "index"]) == [b"{}", b"1"]

    run_with(ports, scenario)


def test_a_transaction_abandoned_midway_leaves_no_watch_behind(ports):
    async def scenario(cache, db, queue, p):
        await db.set(p + "k", b"1")
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.watch([p + "k"])
                raise RuntimeError("refused: out of stock")
        await db.set(p + "k", b"2")  # would doom a WATCH left on a pooled connection
        for _ in range(3):
            async with db.transaction() as tx:
                await tx.watch([p + "other"])
                assert await tx.execute([("SET", p + "other", "ok")]) is not None

    run_with(ports, scenario)


def test_cache_set_get_delete(ports):
    async def scenario(cache, db, queue, p):
        await cache.set(p + "x", b"v", 30)
        assert await cache.mget([p + "x", p + "y"]) == [b"v", None]
        await cache.delete(p + "x", p + "y")
        assert await cache.mget([p + "x"]) == [None]
        await cache.ping()

    run_with(ports, scenario)


def test_queue_put_returns_growing_ids(ports):
    async def scenario(cache, db, queue, p):
        first = await queue.put("emails-" + p[:-1], b"one", ttr=60)
        second = await queue.put("emails-" + p[:-1], b"two", ttr=60)
        assert second > first > 0
        await queue.ping()

    run_with(ports, scenario)
