"""The command lines: bad flags are refused clearly; the seed is idempotent."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from appserver.memory import MemoryDb
from appserver.seed import PRODUCTS, USERS, seed
from minisys.testing import REPO_ROOT


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--cache", "http://x"], "unsupported store URL"),
        (["--queue", "redis://127.0.0.1:1"], "--queue must be one of beanstalk://"),
        (["--db", "redis://127.0.0.1:notaport"], "bad port"),
    ],
)
def test_appserver_refuses_bad_store_urls(args, complaint):
    done = run_module("appserver", "--port", "0", *args)
    assert done.returncode == 2 and complaint in done.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--queue", "redis://127.0.0.1:1"], "--queue must be a beanstalk:// URL"),
        (["--concurrency", "0"], "--concurrency must be 1 to 64"),
        (["--max-attempts", "0"], "--max-attempts must be at least 1"),
    ],
)
def test_worker_refuses_bad_flags(args, complaint):
    done = run_module("appserver.worker", *args)
    assert done.returncode == 2 and complaint in done.stderr


def test_seed_reports_an_unreachable_db():
    done = run_module("appserver.seed", "--db", "redis://127.0.0.1:1")
    assert done.returncode == 1 and "db unavailable" in done.stderr


def test_seed_is_idempotent_and_never_clobbers():
    db = MemoryDb()
    assert asyncio.run(seed(db)) == 2 * len(PRODUCTS) + len(USERS) + 1
    db.data["stock:sku-1"] = b"3"  # sold since the first run
    assert asyncio.run(seed(db)) == 0
    assert db.data["stock:sku-1"] == b"3" and db.data["seq:user"] == b"3"


def test_seed_moves_the_user_counter_past_the_seeded_ids():
    db = MemoryDb()
    db.data["seq:user"] = b"1"
    asyncio.run(seed(db))
    assert db.data["seq:user"] == b"3"
