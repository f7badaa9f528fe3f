"""Shared helpers for minidb tests: open/reopen databases and read their whole contents."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from minidb import DB, open_db
from minisys.testing import RawRespClient, ServerProcess, redis_server

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

# The blocking raw client of minisys.testing, under the name these tests import.
RawClient = RawRespClient


@pytest.fixture(scope="session")
def minidb_port(tmp_path_factory) -> Iterator[int]:
    data = tmp_path_factory.mktemp("minidb-server")
    with ServerProcess("minidb", "--data-dir", str(data), "--fsync", "always") as proc:
        yield proc.port


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory) -> Iterator[int]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    # An AOF with appendfsync always: the durability minidb's --fsync always promises.
    aof = ["--dir", str(tmp_path_factory.mktemp("redis-aof")), "--appendonly", "yes"]
    with redis_server(*aof, "--appendfsync", "always") as redis:
        yield redis.port


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
