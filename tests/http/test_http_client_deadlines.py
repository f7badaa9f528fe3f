"""The client's read deadlines: one timer for all requests in flight, still exact per request."""

from __future__ import annotations

import asyncio

import pytest

from minisys.http.client import ClientTimeout, HttpClient
from minisys.http.message import Request, Response
from minisys.http.server import http_server
from minisys.server import ServerConfig


async def handler(request: Request) -> Response:
    if request.path == "/hang":
        await asyncio.sleep(3600)
    return Response(200, [], b"ok")


async def with_server(test):
    server = http_server("t", ServerConfig(idle_timeout=0, drain_timeout=0.1), handler)
    await server.start()
    try:
        return await test(*server.address)
    finally:
        await server.drain_and_close()


async def timed(client: HttpClient, url: str, timeout: float) -> float:
    """Seconds until the request timed out (it must time out)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ClientTimeout):
        await client.request("GET", url, timeout=timeout)
    return loop.time() - start


def test_a_shorter_deadline_after_a_longer_one_fires_on_time():
    async def test(host, port):
        async with HttpClient() as client:
            url = f"http://{host}:{port}/hang"
            long = asyncio.create_task(timed(client, url, 3.0))
            await asyncio.sleep(0)  # the long request arms the timer first
            short = await timed(client, url, 0.1)
            assert 0.1 <= short < 1.0, short  # not held back until the long deadline
            assert 3.0 <= await long < 5.0

    asyncio.run(with_server(test))


def test_later_deadlines_fire_after_the_first_one_and_nothing_stays_pending():
    async def test(host, port):
        async with HttpClient() as client:
            url = f"http://{host}:{port}/hang"
            times = await asyncio.gather(*(timed(client, url, t) for t in (0.1, 0.3, 0.5)))
            for elapsed, limit in zip(times, (0.1, 0.3, 0.5), strict=True):
                assert limit <= elapsed < limit + 0.7, times
            assert not client._deadlines.pending
            ok = await client.request("GET", f"http://{host}:{port}/fast", timeout=0.5)
            assert ok.status == 200 and not client._deadlines.pending

    asyncio.run(with_server(test))


def test_answered_requests_leave_no_deadline_behind():
    async def test(host, port):
        async with HttpClient() as client:
            url = f"http://{host}:{port}/fast"
            replies = await asyncio.gather(*(client.get(url, timeout=1.0) for _ in range(20)))
            assert [r.status for r in replies] == [200] * 20
            assert not client._deadlines.pending

    asyncio.run(with_server(test))


def test_one_client_used_from_two_event_loops_arms_a_timer_on_each():
    client = HttpClient()

    async def first(host, port):
        # Leaves the timer armed (0.5 s out) on a loop that then ends.
        assert (await client.get(f"http://{host}:{port}/fast", timeout=0.5)).status == 200

    async def second(host, port):
        # A later deadline than the dead loop's timer: it must get a timer of its own.
        assert 1.0 <= await timed(client, f"http://{host}:{port}/hang", 1.0) < 2.0
        await client.close()

    asyncio.run(with_server(first))
    asyncio.run(with_server(second))
