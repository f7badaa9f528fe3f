"""Shared fixtures for kvcache's socket tests: our server, the real Redis, a raw client.

`server` is parametrized over ("kvcache", "redis"): every protocol test runs against our
server and, where `redis-server` is installed, against the real Redis 7 too, so a test that
fails only on "redis" shows that our idea of Redis's behaviour was wrong.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from minisys.resp import INCOMPLETE, RespParser, encode_command
from minisys.testing import ServerProcess, wait_until

# A reply slower than this means the server hung: fail rather than wait forever.
CLIENT_TIMEOUT = 10.0


class RawClient:
    """A blocking RESP client that shows replies exactly as parsed values, errors included."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=CLIENT_TIMEOUT)
        self.parser = RespParser()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> object:
        while True:
            value = self.parser.next_reply()
            if value is not INCOMPLETE:
                return value
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.parser.feed(chunk)

    def call(self, *args: object) -> object:
        self.send_raw(encode_command(*args))
        return self.read()

    def pipeline(self, commands: list[tuple]) -> list[object]:
        self.send_raw(b"".join(encode_command(*c) for c in commands))
        return [self.read() for _ in commands]

    def closed_by_server(self) -> bool:
        """True once the server has closed its side (recv returns b"")."""
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pings(port: int) -> bool:
    try:
        c = RawClient(port)
    except OSError:
        return False
    try:
        # Any answer will do: a server with requirepass answers -NOAUTH.
        c.call("PING")
        return True
    except OSError:
        return False
    finally:
        c.close()


class RedisProcess:
    """A throwaway redis-server without persistence on a free port."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _pings(self.port), timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def kvcache_port() -> Iterator[int]:
    with ServerProcess("kvcache") as proc:
        yield proc.port


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    redis = RedisProcess()
    try:
        yield redis.port
    finally:
        redis.stop()


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
def redis_process() -> type[RedisProcess]:
    """RedisProcess, to start a real redis-server with extra arguments; skips if absent."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    return RedisProcess
