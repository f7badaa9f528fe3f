"""Shared fixtures for kvcache's socket tests: our server, the real Redis, a raw client.

`server` is parametrized over ("kvcache", "redis"): every protocol test runs against our
server and, where `redis-server` is installed, against the real Redis 7 too, so a test that
fails only on "redis" shows that our idea of Redis's behaviour was wrong.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest

from minisys.testing import RawRespClient, RealServer, ServerProcess, redis_server

# The blocking raw client of minisys.testing, under the name these tests use.
RawClient = RawRespClient


@pytest.fixture(scope="session")
def kvcache_port() -> Iterator[int]:
    with ServerProcess("kvcache") as proc:
        yield proc.port


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    with redis_server() as redis:
        yield redis.port


@pytest.fixture(params=["kvcache", pytest.param("redis", marks=pytest.mark.interop)])
def server(request: pytest.FixtureRequest) -> int:
    """The port of a clean server: ours, or the real Redis (the same tests prove Redis)."""
    port = request.getfixturevalue(f"{request.param}_port")
    c = RawClient(port)
    c.call("FLUSHALL")
    c.call("CONFIG", "SET", "maxmemory", "0")
    c.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    c.close()
    return port


@pytest.fixture
def client(server: int) -> Iterator[RawClient]:
    c = RawClient(server)
    yield c
    c.close()


@pytest.fixture(scope="session")
def connect() -> Iterator[type[RawClient]]:
    """The RawClient class, for tests that open several connections (closed by the test)."""
    yield RawClient


@pytest.fixture
def redis_process() -> Callable[..., RealServer]:
    """Starts a real redis-server with extra arguments (the test calls .stop()); skips if
    absent."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    return lambda *args: redis_server(*args).start()
