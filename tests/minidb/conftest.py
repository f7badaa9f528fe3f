"""Shared helpers for minidb tests: open/reopen databases and read their whole contents."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from minidb import DB, open_db
from minisys.resp import INCOMPLETE, RespParser, encode_command
from minisys.testing import ServerProcess, wait_until

# Small files so a handful of records already spans several files and rotations.
SMALL_FILE = 256


def contents(db: DB) -> dict[bytes, bytes]:
    """Everything the db holds, read back through get() (so every CRC is checked)."""
    out = {}
    for key in db:
        value = db.get(key)
        assert value is not None, key
        out[key] = value
    return out


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "LOCK").unlink(missing_ok=True)
    return dst


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    return tmp_path / "db"


@pytest.fixture
def opener(db_dir: Path):
    """open_db with test defaults; every db it opened is closed at teardown."""
    opened: list[DB] = []

    def _open(path: Path | None = None, **options) -> DB:
        options.setdefault("fsync", "no")
        options.setdefault("auto_merge", False)
        db = open_db(path or db_dir, **options)
        opened.append(db)
        return db

    yield _open
    for db in opened:
        if not db.closed:
            db.close()


# ---------------------------------------------------------------- socket test helpers

# A reply slower than this means the server hung: fail rather than wait forever.
CLIENT_TIMEOUT = 15.0


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

    def close(self) -> None:
        self.sock.close()


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
        return c.call("PING") == "PONG"
    except OSError:
        return False
    finally:
        c.close()


class RedisProcess:
    """A throwaway redis-server with an AOF (appendfsync as asked) in a temp dir."""

    def __init__(self, directory: Path, fsync: str = "always") -> None:
        self.port = free_port()
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(directory), "--appendonly", "yes", "--appendfsync", fsync],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: _pings(self.port), timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def minidb_port(tmp_path_factory) -> Iterator[int]:
    data = tmp_path_factory.mktemp("minidb-server")
    with ServerProcess("minidb", "--data-dir", str(data), "--fsync", "always") as proc:
        yield proc.port


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory) -> Iterator[int]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    redis = RedisProcess(tmp_path_factory.mktemp("redis-aof"))
    try:
        yield redis.port
    finally:
        redis.stop()


@pytest.fixture(params=["minidb", pytest.param("redis", marks=pytest.mark.interop)])
def server(request: pytest.FixtureRequest) -> int:
    """The port of a clean server: ours, or the real Redis (the same tests prove Redis)."""
    port = request.getfixturevalue(f"{request.param}_port")
    c = RawClient(port)
    c.call("FLUSHALL")
    c.close()
    return port


@pytest.fixture
def client(server: int) -> Iterator[RawClient]:
    c = RawClient(server)
    yield c
    c.close()
