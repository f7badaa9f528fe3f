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
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from minisys.beanstalk.codec import Reply, ReplyParser
from minisys.testing import wait_until

# A reply slower than this means the server hung: fail rather than wait forever.
CLIENT_TIMEOUT = 10.0


class RawClient:
    """A blocking socket client that shows replies exactly as the server sent them."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=CLIENT_TIMEOUT)
        self.parser = ReplyParser()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> Reply:
        while True:
            reply = self.parser.next_reply()
            if reply is not None:
                return reply
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.parser.feed(chunk)

    def raw_line(self) -> bytes:
        """The next reply exactly as bytes (line, and body when there is one)."""
        r = self.reply()
        line = " ".join([r.word, *(a.decode() for a in r.args)]).encode()
        if r.body is not None:
            return line + b"\r\n" + r.body + b"\r\n"
        return line + b"\r\n"

    def call(self, data: bytes) -> bytes:
        self.send(data)
        return self.raw_line()

    def nothing_pending(self, wait: float = 0.2) -> bool:
        """True if no reply arrives within `wait` (a blocked reserve, a swallowed line)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(CLIENT_TIMEOUT)
        self.parser.feed(chunk)
        return False

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start_beanstalkd(*args: str) -> tuple[subprocess.Popen, int]:
    path = shutil.which("beanstalkd")
    if path is None:
        pytest.skip("beanstalkd is not installed (apt-get install beanstalkd)")
    port = free_port()
    proc = subprocess.Popen(
        [path, "-l", "127.0.0.1", "-p", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: can_connect(port), timeout=10, message="beanstalkd did not listen")
    return proc, port


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
        proc, port = start_beanstalkd()
        try:
            yield Target("beanstalkd", port, proc.pid)
        finally:
            proc.kill()
            proc.wait()


@pytest.fixture
def client(server: Target) -> Iterator[RawClient]:
    c = server.client()
    yield c
    c.close()
