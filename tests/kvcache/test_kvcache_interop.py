"""Real clients against kvcache: redis-py (RESP3 and RESP2), redis-cli, redis-benchmark.

Each is skipped with a reason when the tool is not installed.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.interop


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def redis_py(request: pytest.FixtureRequest, kvcache_port: int):
    redis = pytest.importorskip("redis", reason="redis-py not installed")
    r = redis.Redis(port=kvcache_port, protocol=request.param, socket_timeout=10)
    r.flushall()
    r.config_set("maxmemory", 0)
    r.config_set("maxmemory-policy", "allkeys-lru")
    yield r
    r.close()


def test_redis_py_strings_and_expiry(redis_py) -> None:
    r = redis_py
    assert r.set("greeting", b"hello", ex=100) is True
    assert r.get("greeting") == b"hello"
    assert r.ttl("greeting") in (99, 100)
    assert r.set("greeting", "x", nx=True) is None
    assert r.incr("n") == 1
    assert r.incrby("n", 41) == 42
    assert r.incrbyfloat("f", 1.5) == 1.5
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "b", "c") == [b"1", b"2", None]
    assert r.getex("a", px=50_000) == b"1"
    assert 0 < r.pttl("a") <= 50_000
    assert r.persist("a") is True
    assert r.delete("a", "b", "zz") == 2
    assert r.exists("n", "f") == 2
    assert r.type("n") == b"string"
    assert r.expire("n", 100, gt=True) is False
    assert r.rename("n", "m") is True
    assert sorted(r.scan_iter(match="*")) == [b"f", b"greeting", b"m"]
    assert sorted(r.keys("g*")) == [b"greeting"]
    errors = pytest.importorskip("redis.exceptions")
    with pytest.raises(errors.ResponseError, match="not an integer"):
        r.incr("greeting")


def test_redis_py_pipeline_info_and_config(redis_py) -> None:
    r = redis_py
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"k{i}", i)
        pipe.get(f"k{i}")
    results = pipe.execute()
    assert results[1::2] == [b"%d" % i for i in range(100)]
    assert r.dbsize() == 100
    info = r.info()
    assert info["redis_version"] == "7.0.15"
    assert "keyspace_hits" in r.info("stats")
    assert r.info("keyspace")["db0"]["keys"] == 100
    assert r.config_get("maxmemory") == {"maxmemory": "0"}
    assert r.config_set("maxmemory-policy", "allkeys-lru") is True
    assert r.ping() is True


def run_tool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def test_redis_cli(kvcache_port: int) -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli not installed")
    port = str(kvcache_port)
    assert run_tool("redis-cli", "-p", port, "flushall").stdout.strip() == "OK"
    assert run_tool("redis-cli", "-p", port, "set", "a", "hello world").stdout.strip() == "OK"
    assert run_tool("redis-cli", "-p", port, "get", "a").stdout.strip() == "hello world"
    assert run_tool("redis-cli", "-p", port, "incr", "a").stdout.strip() == (
        "ERR value is not an integer or out of range"
    )
    assert run_tool("redis-cli", "-p", port, "--scan").stdout.split() == ["a"]
    assert "# Stats" in run_tool("redis-cli", "-p", port, "info").stdout
    assert run_tool("redis-cli", "-3", "-p", port, "get", "a").stdout.strip() == "hello world"


def test_redis_benchmark_runs_without_errors(kvcache_port: int) -> None:
    if shutil.which("redis-benchmark") is None:
        pytest.skip("redis-benchmark not installed")
    result = run_tool(
        "redis-benchmark",
        "-p",
        str(kvcache_port),
        "-t",
        "set,get,incr,mset",
        "-n",
        "20000",
        "-q",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout + result.stderr
    assert "rror" not in out, out
    for test in ("SET", "GET", "INCR", "MSET"):
        assert f"{test}:" in out or f"{test} (10 keys):" in out, out
