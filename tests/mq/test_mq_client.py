"""minisys's asyncio beanstalkd client (mq and beanstalkd): every call, pipelining, URLs."""

from __future__ import annotations

import asyncio

import pytest

from minisys.beanstalk.client import (
    BeanstalkClient,
    BeanstalkTimeout,
    DeadlineSoon,
    parse_beanstalk_url,
)
from minisys.testing import async_wait_until


def test_parse_beanstalk_url():
    assert parse_beanstalk_url("beanstalk://127.0.0.1:11301") == ("127.0.0.1", 11301)
    assert parse_beanstalk_url("beanstalk://localhost") == ("localhost", 11300)
    with pytest.raises(ValueError):
        parse_beanstalk_url("redis://127.0.0.1:6379")


def test_pipelined_calls_resolve_in_order(server):
    async def main() -> None:
        client = await BeanstalkClient.connect("127.0.0.1", server.port)
        calls = [client.put(b"%d" % i) for i in range(200)]
        calls.append(client.stats_tube("default"))
        *ids, stats = await asyncio.gather(*calls)
        assert ids == list(range(ids[0], ids[0] + 200))
        assert stats["current-jobs-ready"] == "200"
        jobs = await asyncio.gather(*(client.reserve(timeout=1) for _ in range(200)))
        assert [j.id for j in jobs] == ids
        assert all(await asyncio.gather(*(client.delete(j.id) for j in jobs)))
        await client.close()

    asyncio.run(main())


def test_cancelled_reserve_gives_the_job_back_at_once(server):
    async def main() -> None:
        worker = await BeanstalkClient.connect("127.0.0.1", server.port)
        producer = await BeanstalkClient.connect("127.0.0.1", server.port)
        waiting = asyncio.ensure_future(worker.reserve())
        await async_wait_until(lambda: _stat(producer, "current-waiting", "1"), timeout=5)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        job_id = await producer.put(b"x", ttr=100)
        # Not held hostage by the cancelled reserve: ready, and reservable elsewhere.
        await async_wait_until(lambda: _state(producer, job_id, "ready"), timeout=5)
        assert (await producer.reserve(timeout=1)).id == job_id
        await worker.close()
        await producer.close()

    asyncio.run(main())


def test_deadline_soon_is_an_exception(server):
    async def main() -> None:
        client = await BeanstalkClient.connect("127.0.0.1", server.port)
        await client.put(b"x", ttr=1)
        await client.reserve(timeout=0)
        with pytest.raises(DeadlineSoon):
            await client.reserve(timeout=0)
        await client.close()

    asyncio.run(main())


def test_every_worker_and_inspection_call(server):
    """Each call the appserver and worker may use, once, with its reply decoded."""

    async def main() -> None:
        client = await BeanstalkClient.connect("127.0.0.1", server.port)
        assert await client.use("emails") == "emails"
        assert await client.list_tube_used() == "emails"
        assert await client.watch("emails") == 2
        assert await client.ignore("default") == 1
        job_id = await client.put("hello", pri=5, ttr=30)
        assert (await client.peek_ready()).id == job_id
        job = await client.reserve(timeout=0)
        assert (job.id, job.body) == (job_id, b"hello")
        assert await client.reserve(timeout=0) is None  # TIMED_OUT
        assert await client.touch(job_id)
        assert await client.release(job_id, pri=9, delay=60)
        assert (await client.peek_delayed()).id == job_id
        assert await client.kick_job(job_id)
        job = await client.reserve_job(job_id)
        assert job is not None and await client.bury(job_id, pri=3)
        assert (await client.peek(job_id)).body == b"hello"
        assert await client.kick(10) == 1
        stats = await client.stats_job(job_id)
        assert (stats["pri"], stats["releases"], stats["buries"], stats["kicks"]) == (
            "3", "1", "1", "2",
        )  # fmt: skip
        assert await client.pause_tube("emails", 0)
        assert "emails" in await client.list_tubes()
        assert int((await client.stats())["cmd-put"]) >= 1
        assert await client.delete(job_id)
        assert not await client.touch(job_id) and not await client.release(job_id)
        assert not await client.bury(job_id) and not await client.kick_job(job_id)
        assert await client.peek(job_id) is None and await client.reserve_job(job_id) is None
        await client.close()

    asyncio.run(main())


def test_read_timeout_fails_every_waiting_call_and_reconnects():
    """A server that never answers: both pipelined puts fail, the next call reconnects."""

    async def main() -> None:
        accepted = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)
            await reader.read()  # read and never answer

        srv = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        client = await BeanstalkClient.connect("127.0.0.1", port, read_timeout=0.2)
        results = await asyncio.gather(client.put(b"a"), client.put(b"b"), return_exceptions=True)
        assert all(isinstance(r, BeanstalkTimeout) for r in results), results
        assert isinstance(results[0], TimeoutError) and isinstance(results[0], ConnectionError)
        with pytest.raises(BeanstalkTimeout):
            await client.put(b"c")
        assert len(accepted) == 2  # the timed-out connection was dropped, a new one made
        await client.close()
        for writer in accepted:
            writer.close()
        srv.close()
        await srv.wait_closed()

    asyncio.run(main())


def test_read_timeout_spares_a_waiting_reserve_and_the_calls_behind_it(server):
    async def main() -> None:
        client = await BeanstalkClient.connect("127.0.0.1", server.port, read_timeout=0.3)
        await client.use("rt-empty")
        await client.watch_only("rt-empty")
        # TIMED_OUT comes after a second, well past read_timeout: no BeanstalkTimeout, and the
        # put queued behind the reserve gets its own read_timeout once the reserve is answered.
        job, job_id = await asyncio.gather(client.reserve(timeout=1), client.put(b"x"))
        assert job is None and job_id > 0
        assert (await client.reserve(timeout=0)).id == job_id
        await client.close()

    asyncio.run(main())


async def _stat(client: BeanstalkClient, key: str, value: str) -> bool:
    return (await client.stats())[key] == value


async def _state(client: BeanstalkClient, job_id: int, state: str) -> bool:
    stats = await client.stats_job(job_id)
    return stats is not None and stats["state"] == state
