"""`python -m minisys bench`: place orders through the lb under load and report.

    python -m minisys bench --connections 20 --duration 10

It raises the stock of the demo products so that the load measures placing orders, not
refusing them, then drives `--connections` keep-alive connections at `POST /place-order`
through the lb (client → lb → gateway → appserver → kvcache, minidb, mq) with the bench
consumer's key, printing a progress line every second and, at the end, throughput and
latency percentiles.

The load generator itself is `minisys/http/loadgen.py`; `bench/` holds the per-layer
benchmarks that compare each layer with the real product.

Simpler than the real thing: one client process, closed loop (a new request only when the
last one answered), so it measures throughput at a concurrency, not latency at a fixed
arrival rate (wrk2 and k6 do that).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from minisys.http.client import HttpClient
from minisys.http.loadgen import LoadResult, run_load
from minisys.status import read_state

BENCH_KEY = "minisys-bench-key"
DEMO_SKUS = [f"sku-{i}" for i in range(1, 6)]
# Enough stock that a long bench never runs out (each order takes one).
BENCH_STOCK = 10**9
# Progress is printed once per slice; each slice is one run of the load generator.
SLICE_SECONDS = 1.0


def merge(results: list[LoadResult], duration: float) -> LoadResult:
    """Add up load results that ran side by side (or one after another, over `duration`)."""
    total = LoadResult(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        duration=duration,
        latencies=[lat for r in results for lat in r.latencies],
        status_counts={},
    )
    for r in results:
        for code, n in r.status_counts.items():
            total.status_counts[code] = total.status_counts.get(code, 0) + n
    return total


async def bench(data_dir: Path, connections: int, duration: float) -> int:
    state = read_state(data_dir)
    if state is None:
        print(f"no stack running with data dir {data_dir}: start one with `python -m minisys`")
        return 1
    host = state["host"]
    lb = next(c for c in state["components"] if c["kind"] == "lb")["listeners"]["lb"]
    auth = ("Authorization", f"Bearer {BENCH_KEY}")
    async with HttpClient() as http:
        for sku in DEMO_SKUS:
            resp = await http.request(
                "PATCH", f"http://{host}:{lb}/products/{sku}/stock",
                headers=[auth, ("Content-Type", "application/json")],
                body=json.dumps({"stock": BENCH_STOCK}).encode(),
            )  # fmt: skip
            if resp.status != 200:
                print(f"could not raise the stock of {sku}: {resp.status} {resp.text()[:200]}")
                return 1
    # Orders for one product queue behind each other (its stock key is WATCHed by every
    # order), so the connections are spread over the five demo products.
    bodies = [
        json.dumps({"user_id": 1 + i % 3, "items": [{"sku": sku, "qty": 1}]}).encode()
        for i, sku in enumerate(DEMO_SKUS)
    ]
    headers = [auth, ("Content-Type", "application/json")]
    shares = [
        connections // len(bodies) + (i < connections % len(bodies)) for i in range(len(bodies))
    ]
    print(f"placing orders through the lb at {host}:{lb}: {connections} connections, "
          f"{duration:.0f}s")  # fmt: skip
    results: list[LoadResult] = []
    elapsed = 0.0
    while elapsed < duration:
        slice_ = min(SLICE_SECONDS, duration - elapsed)
        parts = await asyncio.gather(*(
            run_load(host, lb, "/place-order", connections=n, duration=slice_,
                     method="POST", headers=headers, body=body)
            for n, body in zip(shares, bodies, strict=True) if n
        ))  # fmt: skip
        result = merge(parts, slice_)
        results.append(result)
        elapsed += slice_
        p99_ms = result.percentile(99) * 1000
        print(f"  {elapsed:5.1f}s  {result.rps:8.0f} req/s  p99 {p99_ms:6.1f} ms"
              f"  errors {result.errors}", flush=True)  # fmt: skip
    total = merge(results, sum(r.duration for r in results))
    statuses = dict(sorted(total.status_counts.items()))
    print(f"orders: {total.requests} in {total.duration:.1f}s = {total.rps:.0f} req/s; "
          f"statuses {statuses}; errors {total.errors}")  # fmt: skip
    print("latency: " + "  ".join(
        f"p{p}={total.percentile(p) * 1000:.1f}ms" for p in (50, 90, 99)
    ))  # fmt: skip
    return 0 if total.errors == 0 and set(total.status_counts) <= {201} else 1
