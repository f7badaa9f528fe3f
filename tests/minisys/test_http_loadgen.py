"""The load generator: counts, statuses, percentiles, reconnects, and no hang on a dead server."""

from __future__ import annotations

import asyncio

from minisys.http import loadgen
from minisys.http.loadgen import LoadResult, run_load
from minisys.http.message import Request, Response
from minisys.http.server import HttpSettings, http_server
from minisys.server import ServerConfig


async def handler(request: Request) -> Response:
    if request.path == "/hang":
        await asyncio.sleep(3600)
    return Response(201 if request.method == "POST" else 200, [], request.body)


async def with_server(test, settings=None):
    server = http_server(
        "t", ServerConfig(idle_timeout=0, drain_timeout=0.1), handler, settings=settings
    )
    await server.start()
    try:
        return await test(*server.address)
    finally:
        await server.drain_and_close()


def test_counts_requests_and_statuses():
    async def test(host, port):
        return await run_load(
            host, port, "/x", connections=4, duration=0.3, method="POST", body=b"hi"
        )

    result = asyncio.run(with_server(test))
    assert result.requests > 0 and result.errors == 0
    assert result.status_counts == {201: result.requests}
    assert 0 < result.p50 <= result.p99 and result.rps > 0
    assert "req/s" in result.summary()


def test_reconnects_when_the_server_closes_connections():
    async def test(host, port):
        return await run_load(host, port, "/", connections=2, duration=0.3)

    result = asyncio.run(with_server(test, HttpSettings(max_requests_per_connection=3)))
    assert result.requests > 6 and result.errors == 0


def test_a_hung_server_is_cut_off(monkeypatch):
    monkeypatch.setattr(loadgen, "GRACE_SECONDS", 0.2)

    async def test(host, port):
        return await run_load(host, port, "/hang", connections=3, duration=0.1)

    result = asyncio.run(with_server(test))
    assert result.requests == 0 and result.errors == 3


def test_percentiles():
    result = LoadResult(100, 0, 1.0, [i / 1000 for i in range(100)], {200: 100})
    assert result.percentile(50) == 0.05 and result.p99 == 0.099
