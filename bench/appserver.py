"""Benchmark one appserver on our stores against the same appserver on the real products.

    python bench/appserver.py [--duration 5] [--rounds 4] [--warmup 1] [--connections 32]
                              [--fsync always|everysec|no] [--hot] [--only FIGURE]

Two stacks run side by side, each with one `python -m appserver` process:

    ours   kvcache (cache) + minidb (db) + mq (queue)
    peer   redis-server (cache) + redis-server (db) + beanstalkd (queue)

The appserver code is identical; only the stores differ, so the ratio says what our
stores cost the shop end to end. Durability is the same on both sides and printed at the
start (`PARITY` lines): with the default `--fsync always` minidb and mq fsync before they
acknowledge a write, the peer's db redis has `appendfsync always` and beanstalkd `-f 0`;
`everysec` and `no` map to `appendfsync everysec`/`-f 1000` and `appendfsync no`/`-F`. Neither
cache persists anything. Both appservers use RESP2.

Because wall-clock figures swing on a shared machine, every run also reports the CPU
time each process spent per request (utime+stime from /proc/<pid>/stat, before and after
the run, divided by wrk's request count): `CPU` lines, medians over the rounds.

wrk drives each figure (after a 1 s warm-up of each side), alternating ours/peer within
every round, and which goes first from round to round, so machine noise hits both alike:

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
import os
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
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minisys.testing import ServerProcess, beanstalkd, redis_server  # noqa: E402

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
# Orders are spread over this many products (random per request), as in a shop where
# many things sell at once; `--hot` puts every order on one product (a flash sale), where
# WATCH conflicts dominate.
BENCH_SKUS = 20
FIGURES = ("get_product", "place_order")
FIGURE_PATHS = {"get_product": "/products/sku-1", "place_order": "/place-order"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ORDER_LUA = """
local skus = SKUS
request = function()
  local body = string.format('{"user_id": %d, "items": [{"sku": "bench-%d", "qty": 1}]}',
                             math.random(1, 3), math.random(0, skus - 1))
  return wrk.format("POST", "/place-order", {["Content-Type"] = "application/json"}, body)
end
"""


# The durability flags of each side for one `--fsync` setting: the same promise.
OUR_FSYNC = {"always": "always", "everysec": "everysec", "no": "no"}
REDIS_FSYNC = {
    "always": ["--appendonly", "yes", "--appendfsync", "always"],
    "everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
    "no": ["--appendonly", "yes", "--appendfsync", "no"],
}
BEANSTALKD_FSYNC = {"always": ["-f", "0"], "everysec": ["-f", "1000"], "no": ["-F"]}


class Stores(NamedTuple):
    urls: tuple[str, str, str]  # cache, db, queue
    pids: dict[str, int]  # process name → pid, for the CPU accounting


@contextlib.contextmanager
def our_stores(tmp: Path, fsync: str) -> Iterator[Stores]:
    with (
        ServerProcess("kvcache") as kv,
        ServerProcess("minidb", "--data-dir", str(tmp / "minidb"), "--fsync", fsync) as db,
        ServerProcess("mq", "--data-dir", str(tmp / "mq"), "--fsync", fsync) as mq,
    ):
        yield Stores(
            (
                f"redis://127.0.0.1:{kv.port}",
                f"redis://127.0.0.1:{db.port}",
                f"beanstalk://127.0.0.1:{mq.port}",
            ),
            {"kvcache": kv.pid, "minidb": db.pid, "mq": mq.pid},
        )


@contextlib.contextmanager
def peer_stores(tmp: Path, fsync: str) -> Iterator[Stores]:
    (tmp / "redis-db").mkdir()
    (tmp / "beanstalkd").mkdir()
    with (
        redis_server() as cache,
        redis_server("--dir", str(tmp / "redis-db"), *REDIS_FSYNC[fsync]) as db,
        beanstalkd("-b", str(tmp / "beanstalkd"), *BEANSTALKD_FSYNC[fsync]) as queue,
    ):
        yield Stores(
            (
                f"redis://127.0.0.1:{cache.port}",
                f"redis://127.0.0.1:{db.port}",
                f"beanstalk://127.0.0.1:{queue.port}",
            ),
            {"redis-cache": cache.pid, "redis-db": db.pid, "beanstalkd": queue.pid},
        )


def print_parity(fsync: str) -> None:
    ours = f"--fsync {OUR_FSYNC[fsync]}"
    print(f"PARITY ours: kvcache (no persistence), minidb {ours}, mq {ours}")
    print(
        "PARITY peer: redis cache (--save '' --appendonly no), redis db "
        f"{' '.join(REDIS_FSYNC[fsync])}, beanstalkd -b DIR {' '.join(BEANSTALKD_FSYNC[fsync])}"
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Run(NamedTuple):
    rps: float
    p99: float  # ms
    cpu: dict[str, float]  # process name → CPU µs per request


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


def wrk(url: str, duration: int, connections: int, script: Path | None) -> tuple[float, float, int]:
    """Run wrk; return (requests per second, p99 latency in ms, requests completed)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        print(f"    ({bad.group(1)} non-2xx answers)")
    return rps, p99, total


def result(name: str, ours: float, peer: float, *, lower_is_better: bool = False) -> None:
    ratio = (peer / ours if lower_is_better else ours / peer) if ours and peer else float("nan")
    digits = 2 if lower_is_better else 0
    print(
        f"RESULT {name}: ours={ours:.{digits}f} peer={peer:.{digits}f} ratio={ratio:.2f} target=0.8"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1, help="seconds per warm-up run (0: none)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--fsync", choices=("always", "everysec", "no"), default="always")
    parser.add_argument("--hot", action="store_true", help="every order on one product")
    parser.add_argument("--only", choices=FIGURES, help="run one figure (iterating on one path)")
    args = parser.parse_args()
    for tool in ("wrk", "redis-server", "beanstalkd"):
        if shutil.which(tool) is None:
            print(f"bench/appserver.py needs {tool} (apt-get install {tool})")
            return 1
    print_parity(args.fsync)
    figures = [f for f in FIGURES if args.only in (None, f)]
    runs: dict[tuple[str, str], list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-appserver-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "ours").mkdir()
        (tmp / "peer").mkdir()
        script = tmp / "order.lua"
        script.write_text(ORDER_LUA.replace("SKUS", "1" if args.hot else str(BENCH_SKUS)))
        with (
            our_stores(tmp / "ours", args.fsync) as ours,
            peer_stores(tmp / "peer", args.fsync) as peer,
            contextlib.ExitStack() as stack,
        ):
            apps: dict[str, tuple[int, dict[str, int]]] = {}
            for side, stores in (("ours", ours), ("peer", peer)):
                cache, db, queue = stores.urls
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
                apps[side] = (app.port, {"appserver": app.pid, **stores.pids})
            for figure in figures if args.warmup else ():  # unmeasured: all paths warm
                path, lua = FIGURE_PATHS[figure], (script if figure == "place_order" else None)
                for port, _ in apps.values():
                    wrk(f"http://127.0.0.1:{port}{path}", args.warmup, args.connections, lua)
            for n in range(args.rounds):
                # ours-peer in odd rounds, peer-ours in even ones: a drift in machine load
                # during a round does not always favour the side that runs first.
                order = ("ours", "peer") if n % 2 == 0 else ("peer", "ours")
                for figure in figures:
                    path, lua = FIGURE_PATHS[figure], (script if figure == "place_order" else None)
                    for side in order:
                        port, pids = apps[side]
                        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                        rps, p99, total = wrk(
                            f"http://127.0.0.1:{port}{path}", args.duration, args.connections, lua
                        )
                        cpu = {
                            name: (cpu_seconds(pid) - before[name]) * 1e6 / max(total, 1)
                            for name, pid in pids.items()
                        }
                        print(
                            f"round {n + 1} {figure:<12} {side}: {rps:7.0f} req/s  "
                            f"p99 {p99:7.2f} ms  CPU µs/req "
                            + " ".join(f"{name}={us:.0f}" for name, us in cpu.items())
                        )
                        runs.setdefault((figure, side), []).append(Run(rps, p99, cpu))
                        time.sleep(0.5)
    for figure in figures:
        for side in ("ours", "peer"):
            cpus = [r.cpu for r in runs[(figure, side)]]
            per = {name: statistics.median(c[name] for c in cpus) for name in cpus[0]}
            print(
                f"CPU {figure} {side} (µs per request, median): "
                + " ".join(f"{name}={us:.0f}" for name, us in per.items())
                + f" total={sum(per.values()):.0f}"
            )
    for figure in figures:
        ours_runs, peer_runs = runs[(figure, "ours")], runs[(figure, "peer")]
        result(
            f"appserver_{figure}_rps",
            statistics.median(r.rps for r in ours_runs),
            statistics.median(r.rps for r in peer_runs),
        )
        result(
            f"appserver_{figure}_p99_ms",
            statistics.median(r.p99 for r in ours_runs),
            statistics.median(r.p99 for r in peer_runs),
            lower_is_better=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
