"""Shared fixtures for mq's socket tests: our server, the real beanstalkd, a raw client.

`server` is parametrized over ("mq", "beanstalkd"): every protocol test runs against mq
and, where `beanstalkd` is installed, against the real one too, so a test failing only on
"beanstalkd" shows our idea of beanstalkd's behaviour was wrong.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from minisys.testing import RawBeanstalkClient, beanstalkd

# The blocking raw client of minisys.testing, under the name these tests use.
RawClient = RawBeanstalkClient


@dataclass
class Target:
    kind: str  # "mq" or "beanstalkd"
    port: int
    pid: int
    app: object = None  # the in-process MqApp, for mq

    def client(self) -> RawClient:
        return RawClient(self.port)

    def drain(self) -> None:
        """Enter drain mode: SIGUSR1 for beanstalkd, the same call the handler makes for mq."""
        if self.app is None:
            os.kill(self.pid, signal.SIGUSR1)
        else:
            loop = self.app.server.loop
            loop.call_soon_threadsafe(self.app.enter_drain_mode)


class InProcessMq:
    """mq's server on its own event loop in a thread: starts in milliseconds, so every
    protocol test gets a fresh server (process start-up is tested in test_mq_process.py)."""

    def __init__(self) -> None:
        from minisys.server import ServerConfig
        from mq.server import MqApp

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = MqApp()
        self.server = self.app.make_server(ServerConfig(port=0, idle_timeout=0))
        self.server.loop = self.loop
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.port = self.server.address[1]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.drain_and_close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(
    params=["mq", pytest.param("beanstalkd", marks=pytest.mark.interop)],
)
def server(request) -> Iterator[Target]:
    if request.param == "mq":
        mq = InProcessMq()
        try:
            yield Target("mq", mq.port, os.getpid(), mq.app)
        finally:
            mq.close()
    else:
        if shutil.which("beanstalkd") is None:
            pytest.skip("beanstalkd is not installed (apt-get install beanstalkd)")
        with beanstalkd() as real:
            yield Target("beanstalkd", real.port, real.pid)


@pytest.fixture
def client(server: Target) -> Iterator[RawClient]:
    c = server.client()
    yield c
    c.close()
