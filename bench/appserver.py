"""Benchmark one appserver on our stores against the same appserver on the real products.

    python bench/appserver.py [--duration 5] [--rounds 2] [--connections 32] [--fsync always]

Two stacks run side by side, each with one `python -m appserver` process:

    ours   kvcache (cache) + minidb (db) + mq (queue)
    peer   redis-server (cache) + redis-server (db) + beanstalkd (queue)

The appserver code is identical; only the stores differ, so the ratio says what our
stores cost the shop end to end. Durability matches the launcher's default: minidb and mq
with `--fsync always`, the peer's db redis with `appendfsync always` and beanstalkd with
`-f 0` (`--fsync no` relaxes both sides alike).

wrk drives each figure, alternating ours/peer within every round so machine noise hits
both alike:

    GET  /products/sku-1   the cache-hit path: one MGET to the cache, no db access
    POST /place-order      the full flow: cache reads, WATCH/MULTI/EXEC, DEL, put, DEL;
                           orders spread over 20 products (`--hot`: all on one)

Ends with one line per figure (medians over the rounds):

    RESULT appserver_get_product_rps: ours=… peer=… ratio=… target=0.8
    RESULT appserver_get_product_p99_ms: ours=… peer=… ratio=… target=0.8  (peer/ours)
    RESULT appserver_place_order_rps: ours=… peer=… ratio=… target=0.8
    RESULT appserver_place_order_p99_ms: ours=… peer=… ratio=… target=0.8  (peer/ours)

For latencies the ratio is peer/ours, so for every line higher is better.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minisys.testing import ServerProcess, beanstalkd, redis_server  # noqa: E402

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
# Orders are spread over this many products (random per request), as in a shop where
# many things sell at once; `--hot` puts every order on one product (a flash sale), where
# WATCH conflicts dominate.
BENCH_SKUS = 20
ORDER_LUA = """
local skus = SKUS
request = function()
  local body = string.format('{"user_id": %d, "items": [{"sku": "bench-%d", "qty": 1}]}',
                             math.random(1, 3), math.random(0, skus - 1))
  return wrk.format("POST", "/place-order", {["Content-Type"] = "application/json"}, body)
end
"""


@contextlib.contextmanager
def our_stores(tmp: Path, fsync: str) -> Iterator[tuple[str, str, str]]:
    with (
        ServerProcess("kvcache") as kv,
        ServerProcess("minidb", "--data-dir", str(tmp / "minidb"), "--fsync", fsync) as db,
        ServerProcess("mq", "--data-dir", str(tmp / "mq"), "--fsync", fsync) as mq,
    ):
        yield (
            f"redis://127.0.0.1:{kv.port}",
            f"redis://127.0.0.1:{db.port}",
            f"beanstalk://127.0.0.1:{mq.port}",
        )


@contextlib.contextmanager
def peer_stores(tmp: Path, fsync: str) -> Iterator[tuple[str, str, str]]:
    redis_fsync = {
        "always": ["--appendonly", "yes", "--appendfsync", "always"],
        "everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
        "no": ["--appendonly", "no"],
    }[fsync]
    (tmp / "redis-db").mkdir()
    (tmp / "beanstalkd").mkdir()
    queue_args = ["-b", str(tmp / "beanstalkd"), "-f", "0"] if fsync == "always" else []
    with (
        redis_server() as cache,
        redis_server("--dir", str(tmp / "redis-db"), *redis_fsync) as db,
        beanstalkd(*queue_args) as queue,
    ):
        yield (
            f"redis://127.0.0.1:{cache.port}",
            f"redis://127.0.0.1:{db.port}",
            f"beanstalk://127.0.0.1:{queue.port}",
        )


def http(port: int, method: str, path: str, body: object = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def prepare(port: int) -> None:
    """Seeded data plus products with stock for every order the bench will place."""
    for n in range(BENCH_SKUS):
        status, _ = http(
            port,
            "POST",
            "/products",
            {"sku": f"bench-{n}", "name": "Bench", "price": 1, "stock": 10**9},
        )
        assert status in (201, 409), status
    for path in ("/products/sku-1", "/users/1", "/users/2", "/users/3"):
        assert http(port, "GET", path)[0] == 200, path


def wrk(url: str, duration: float, connections: int, script: Path | None) -> tuple[float, float]:
    """Run wrk; return (requests per second, p99 latency in ms)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        print(f"    ({bad.group(1)} non-2xx answers)")
    return rps, p99


def result(name: str, ours: float, peer: float, *, lower_is_better: bool = False) -> None:
    ratio = (peer / ours if lower_is_better else ours / peer) if ours and peer else float("nan")
    digits = 2 if lower_is_better else 0
    print(
        f"RESULT {name}: ours={ours:.{digits}f} peer={peer:.{digits}f} ratio={ratio:.2f} target=0.8"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--fsync", choices=("always", "everysec", "no"), default="always")
    parser.add_argument("--hot", action="store_true", help="every order on one product")
    args = parser.parse_args()
    for tool in ("wrk", "redis-server", "beanstalkd"):
        if shutil.which(tool) is None:
            print(f"bench/appserver.py needs {tool} (apt-get install {tool})")
            return 1
    with tempfile.TemporaryDirectory(prefix="bench-appserver-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "ours").mkdir()
        (tmp / "peer").mkdir()
        script = tmp / "order.lua"
        script.write_text(ORDER_LUA.replace("SKUS", "1" if args.hot else str(BENCH_SKUS)))
        with (
            our_stores(tmp / "ours", args.fsync) as ours_urls,
            peer_stores(tmp / "peer", args.fsync) as peer_urls,
        ):
            apps = {}
            with contextlib.ExitStack() as stack:
                for side, (cache, db, queue) in (("ours", ours_urls), ("peer", peer_urls)):
                    app = stack.enter_context(
                        ServerProcess(
                            "appserver",
                            "--cache",
                            cache,
                            "--db",
                            db,
                            "--queue",
                            queue,
                            "--seed",
                            "--log-level",
                            "warning",
                        )
                    )
                    prepare(app.port)
                    apps[side] = app.port
                figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
                for n in range(args.rounds):
                    for figure, path, lua in (
                        ("get_product", "/products/sku-1", None),
                        ("place_order", "/place-order", script),
                    ):
                        for side in ("ours", "peer"):
                            rps, p99 = wrk(
                                f"http://127.0.0.1:{apps[side]}{path}",
                                args.duration,
                                args.connections,
                                lua,
                            )
                            print(
                                f"round {n + 1} {figure:<12} {side}: {rps:9.0f} req/s  "
                                f"p99 {p99:7.2f} ms"
                            )
                            figures.setdefault((figure, side), []).append((rps, p99))
                            time.sleep(0.5)
    for figure in ("get_product", "place_order"):
        ours = figures[(figure, "ours")]
        peer = figures[(figure, "peer")]
        result(
            f"appserver_{figure}_rps",
            statistics.median(r for r, _ in ours),
            statistics.median(r for r, _ in peer),
        )
        result(
            f"appserver_{figure}_p99_ms",
            statistics.median(p for _, p in ours),
            statistics.median(p for _, p in peer),
            lower_is_better=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
