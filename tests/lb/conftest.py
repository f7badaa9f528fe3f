"""Helpers for the lb's socket tests: in-process backends and an in-process lb.

The lb and its backends run in the test's own event loop, so a test can look at the
lb's state (queue length, per-backend counters, transport buffers) while traffic flows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from lb.algorithms import make_algorithm
from lb.backend import Backend, Pool
from lb.health import HealthSettings, HealthState
from lb.listener import Listener
from lb.proxy import Balancer, ProxySettings
from minisys.poller import ServingLoopPolicy
from minisys.server import ServerConfig


@pytest.fixture(autouse=True)
def splice_loop():
    """Every `asyncio.run` in these tests runs on the lb's own loop, as `python -m lb` does."""
    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(ServingLoopPolicy())
    yield
    asyncio.set_event_loop_policy(old)


class EchoBackend:
    """A TCP server that echoes every byte back; on EOF it finishes echoing, then EOFs."""

    def __init__(self, tag: bytes = b"") -> None:
        self.tag = tag
        self.server: asyncio.base_events.Server | None = None
        self.accepted = 0
        self.received: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> EchoBackend:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        if self.tag:
            writer.write(self.tag)
        chunks = []
        try:
            while data := await reader.read(65536):
                chunks.append(data)
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.received.append(b"".join(chunks))
            writer.close()

    async def stop(self) -> None:
        """Stop listening and cut every open connection (a killed backend)."""
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


def make_backend(port: int, **health: float) -> Backend:
    return Backend("127.0.0.1", port, health=HealthState(HealthSettings(**health)))


@contextlib.asynccontextmanager
async def running_lb(
    backends: list[Backend],
    algorithm: str = "roundrobin",
    max_connections: int = 1000,
    idle_timeout: float = 0.0,
    **settings: object,
) -> AsyncIterator[tuple[Listener, Balancer]]:
    balancer = Balancer(Pool(make_algorithm(algorithm), backends), ProxySettings(**settings))
    config = ServerConfig(max_connections=max_connections, idle_timeout=idle_timeout)
    server = Listener("lb", config, balancer.connection)
    await server.start()
    try:
        yield server, balancer
    finally:
        config.drain_timeout = 0.5
        await server.drain_and_close()


async def unused_port() -> int:
    """A port nobody listens on (bound, then released)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def read_all(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read()


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (importlib mode cannot import conftest)."""
    return SimpleNamespace(
        EchoBackend=EchoBackend,
        make_backend=make_backend,
        running_lb=running_lb,
        unused_port=unused_port,
        read_all=read_all,
    )
