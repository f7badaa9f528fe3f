"""Real clients against minidb: redis-py (RESP3 handshake, pipelines, transactions, scan_iter),
redis-cli and redis-benchmark. Each skips with the reason when the tool is absent."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.interop


@pytest.fixture
def redis_py(minidb_port):
    redis = pytest.importorskip("redis", reason="redis-py is not installed")
    r = redis.Redis(port=minidb_port)
    r.flushall()
    yield r
    r.close()


def test_redis_py_basics(redis_py):
    r = redis_py
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == b"hello"
    assert r.set("greeting", "x", nx=True) is None
    assert r.incr("n") == 1 and r.incrby("n", 5) == 6 and r.decr("n") == 5
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "b", "c") == [b"1", b"2", None]
    assert r.delete("a", "c") == 1
    assert r.exists("b") == 1
    assert sorted(r.scan_iter(match="*", count=2)) == [b"b", b"greeting", b"n"]
    assert r.dbsize() == 3
    assert r.info("persistence")["aof_enabled"] == 1
    assert r.info("keyspace")["db0"]["keys"] == 3


def test_redis_py_pipeline_and_transaction(redis_py):
    r = redis_py
    with r.pipeline(transaction=True) as pipe:
        pipe.set("x", "1").incr("x").get("x")
        assert pipe.execute() == [True, 2, b"2"]

    def double(pipe):
        value = int(pipe.get("x"))
        pipe.multi()
        pipe.set("x", value * 2)

    r.transaction(double, "x")
    assert r.get("x") == b"4"
    with r.pipeline(transaction=False) as pipe:
        for i in range(100):
            pipe.set(f"p{i}", i)
        assert pipe.execute() == [True] * 100


def test_redis_cli(minidb_port):
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")

    def run(*args: str) -> str:
        out = subprocess.run(
            [cli, "-p", str(minidb_port), *args], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert run("SET", "cli", "works") == "OK\n"
    assert run("GET", "cli") == "works\n"
    assert run("INCR", "clicount") == "1\n"
    assert run("GET", "nothing") == "\n"
    assert "ERR syntax error" in run("SET", "a", "b", "NX", "XX")
    assert "cli" in run("--scan", "--pattern", "cl*")


def test_redis_benchmark_runs_clean(minidb_port):
    bench = shutil.which("redis-benchmark")
    if bench is None:
        pytest.skip("redis-benchmark is not installed")
    out = subprocess.run(
        [bench, "-p", str(minidb_port), "-t", "set,get,incr,mset", "-n", "2000", "-c", "20", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "error" not in text.lower(), text
    for name in ("SET", "GET", "INCR", "MSET"):
        assert f"{name}" in text and "requests per second" in text
