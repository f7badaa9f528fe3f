"""kvcache's speed and memory, each next to its nearest real peer, in one run.

1. Embedded: `LRUCache` vs `cachetools.TTLCache` vs a minimal OrderedDict LRU (the
   `functools.lru_cache` recipe), on the same cache-aside workload: skewed reads over
   more keys than fit, a miss fills the key with a TTL. Rounds alternate; best round wins.
   Timed in CPU seconds of this process (time.process_time), so that other programs on a
   busy shared machine do not decide the ratio.
2. Server: `redis-benchmark -t set,get -c 50 -n N` (and again with `-P 16`) against
   `python -m kvcache` and a `redis-server --save '' --appendonly no` the script starts,
   alternating ours / theirs.
3. Memory: 1M keys with 100-byte values loaded into each; ours is the growth of the
   process's RSS per key (and the cache's own estimate), Redis's is `used_memory` growth.

    python bench/kvcache.py                 # everything, about 1–2 minutes
    python bench/kvcache.py --skip-server   # the embedded part only

Ends with `RESULT <name>: ours=<v> peer=<v> ratio=<r> target=<t>` lines. The machine is
small and shared: numbers are noisy, ratios from the same run are what to read.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import shutil
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kvcache import LRUCache
from minisys.testing import RawRespClient, ServerProcess, redis_server

RESULTS: list[str] = []


def result(name: str, ours: float, peer: float, target: str) -> None:
    ratio = ours / peer if peer else float("nan")
    line = f"RESULT {name}: ours={ours:.6g} peer={peer:.6g} ratio={ratio:.3f} target={target}"
    RESULTS.append(line)


# --- 1. embedded -------------------------------------------------------------------------


class OrderedDictLRU:
    """The textbook LRU: what functools.lru_cache does inside, as a mapping."""

    def __init__(self, maxsize: int) -> None:
        self.data: OrderedDict = OrderedDict()
        self.maxsize = maxsize

    def get(self, key, default=None):
        try:
            self.data.move_to_end(key)
        except KeyError:
            return default
        return self.data[key]

    def set(self, key, value) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        if len(self.data) > self.maxsize:
            self.data.popitem(last=False)


def workload(ops: int, keyspace: int, seed: int = 7) -> list[bytes]:
    """Skewed key choices (80% of reads on 20% of keys), as a hot cache sees them."""
    rng = random.Random(seed)
    hot = keyspace // 5
    keys = [b"user:%d" % i for i in range(keyspace)]
    return [
        keys[rng.randrange(hot)] if rng.random() < 0.8 else rng.choice(keys) for _ in range(ops)
    ]


def run_lrucache(keys: list[bytes], maxsize: int) -> float:
    cache = LRUCache(maxsize, 0)
    get, set_ = cache.get, cache.set
    value = b"x" * 100
    t = time.process_time()
    for key in keys:
        if get(key) is None:
            set_(key, value, 60.0)
    return len(keys) / (time.process_time() - t)


def run_cachetools(keys: list[bytes], maxsize: int) -> float:
    import cachetools

    cache = cachetools.TTLCache(maxsize, ttl=60.0)
    get = cache.get
    value = b"x" * 100
    t = time.process_time()
    for key in keys:
        if get(key) is None:
            cache[key] = value
    return len(keys) / (time.process_time() - t)


def run_ordereddict(keys: list[bytes], maxsize: int) -> float:
    cache = OrderedDictLRU(maxsize)
    get, set_ = cache.get, cache.set
    value = b"x" * 100
    t = time.process_time()
    for key in keys:
        if get(key) is None:
            set_(key, value)
    return len(keys) / (time.process_time() - t)


def bench_embedded(ops: int, rounds: int) -> None:
    keys = workload(ops, keyspace=50_000)
    maxsize = 10_000
    runners = {"lrucache": run_lrucache, "ordereddict": run_ordereddict}
    try:
        import cachetools  # noqa: F401

        runners["cachetools"] = run_cachetools
    except ImportError:
        print("cachetools not installed: skipping that peer (pip install cachetools)")
    best = dict.fromkeys(runners, 0.0)
    for r in range(rounds):
        for name, run in runners.items():
            best[name] = max(best[name], run(keys, maxsize))
            print(f"  embedded round {r + 1} {name:12s} {best[name]:12,.0f} ops/s (best)")
    if "cachetools" in best:
        result("kvcache_embedded_vs_cachetools_ops", best["lrucache"], best["cachetools"], "1.5")
    result("kvcache_embedded_vs_ordereddict_ops", best["lrucache"], best["ordereddict"], "none")


# --- 2. server throughput ----------------------------------------------------------------


# A bulk MSET load of a million keys can take a while on a shared 2-core machine.
CLIENT_TIMEOUT = 120.0


class Client(RawRespClient):
    """The raw RESP client with a bench-sized timeout and an INFO field reader."""

    def __init__(self, port: int) -> None:
        super().__init__(port, timeout=CLIENT_TIMEOUT)

    def info_field(self, section: str, field: str) -> int:
        text = self.call("INFO", section).decode()
        for line in text.split("\r\n"):
            if line.startswith(field + ":"):
                return int(line.split(":")[1])
        raise KeyError(field)


def redis_benchmark(port: int, requests: int, pipeline: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-t",
            "set,get",
            "-c",
            "50",
            "-n",
            str(requests),
            "-P",
            str(pipeline),
            "--csv",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    rows = list(csv.reader(io.StringIO(out)))
    return {row[0]: float(row[1]) for row in rows[1:] if len(row) > 1}


def bench_server(requests: int, rounds: int) -> None:
    if shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None:
        print("redis-benchmark/redis-server not installed: skipping the server comparison")
        return
    with ServerProcess("kvcache") as ours, redis_server() as redis:
        # A short unmeasured run first: connection set-up and a cold process (memory
        # arenas still growing) would otherwise count against whoever goes first.
        for port in (ours.port, redis.port):
            redis_benchmark(port, max(1000, requests // 10), 1)
        for pipeline, target in ((1, "0.5"), (16, "0.25")):
            best = {"ours": {}, "redis": {}}
            for r in range(rounds):
                for who, port in (("ours", ours.port), ("redis", redis.port)):
                    rps = redis_benchmark(port, requests, pipeline)
                    for test, v in rps.items():
                        best[who][test] = max(best[who].get(test, 0.0), v)
                    print(f"  server round {r + 1} -P {pipeline:2d} {who:5s} {rps}")
            suffix = "" if pipeline == 1 else f"_p{pipeline}"
            for test in ("SET", "GET"):
                result(
                    f"kvcache_server_{test.lower()}_rps{suffix}",
                    best["ours"].get(test, 0.0),
                    best["redis"].get(test, 0.0),
                    target,
                )


# --- 3. memory ---------------------------------------------------------------------------


def load_keys(port: int, n: int) -> None:
    client = Client(port)
    value = b"v" * 100
    batch = 100  # keys per MSET
    commands_per_write = 50
    for start in range(0, n, batch * commands_per_write):
        commands = []
        for b in range(start, min(n, start + batch * commands_per_write), batch):
            args = ["MSET"]
            for i in range(b, min(n, b + batch)):
                args += [b"key:%010d" % i, value]
            commands.append(tuple(args))
        client.pipeline(commands)


def bench_memory(keys: int) -> None:
    if shutil.which("redis-server") is None:
        print("redis-server not installed: skipping the memory comparison")
        return
    with ServerProcess("kvcache") as ours:
        client = Client(ours.port)
        rss0 = client.info_field("memory", "used_memory_rss")
        t = time.perf_counter()
        load_keys(ours.port, keys)
        load_s = time.perf_counter() - t
        rss1 = client.info_field("memory", "used_memory_rss")
        estimate = client.info_field("memory", "used_memory")
    with redis_server() as redis:
        client = Client(redis.port)
        used0 = client.info_field("memory", "used_memory")
        load_keys(redis.port, keys)
        used1 = client.info_field("memory", "used_memory")
    ours_per_key = (rss1 - rss0) / keys
    print(
        f"  memory: loaded {keys:,} keys into kvcache in {load_s:.1f}s; "
        f"RSS +{(rss1 - rss0) / 2**20:.0f} MiB, estimate {estimate / 2**20:.0f} MiB "
        f"({estimate / keys:.0f} B/key); redis used_memory +{(used1 - used0) / 2**20:.0f} MiB"
    )
    result("kvcache_memory_bytes_per_key", ours_per_key, (used1 - used0) / keys, "none")
    result("kvcache_memory_estimate_vs_rss", estimate / keys, ours_per_key, "~1.0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=200_000, help="embedded operations/round")
    parser.add_argument("--rounds", type=int, default=3, help="embedded rounds (best wins)")
    parser.add_argument("--requests", type=int, default=200_000, help="redis-benchmark -n")
    parser.add_argument("--server-rounds", type=int, default=1)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys for the memory test")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    bench_embedded(args.ops, args.rounds)
    if not args.skip_server:
        bench_server(args.requests, args.server_rounds)
    if not args.skip_memory:
        bench_memory(args.keys)
    for line in RESULTS:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
