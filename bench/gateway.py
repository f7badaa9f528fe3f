"""Benchmark: the gateway vs nginx as a reverse proxy, both in front of the same upstream.

    python bench/gateway.py [--duration 5] [--connections 50] [--rounds 2]

Four targets, measured with wrk in alternating rounds so machine noise hits all alike:

    direct    wrk → upstream                      (what the upstream alone can do)
    gateway   wrk → python -m gateway → upstream  (API key auth + token bucket on)
    engine    wrk → bare proxy → upstream         (the same HTTP server + pooled client
                                                   with no gateway logic: the floor cost
                                                   of one Python process proxying)
    nginx     wrk → nginx proxy_pass → upstream   (limit_req on, keep-alive upstream)

The upstream is an nginx server block answering `200 ok` from memory, so it is never the
bottleneck. Both proxies have one worker (one process, one core: the gateway is one asyncio
process) and no access log. The limits are set high enough never to trigger.

Added latency is measured separately with one connection (no queueing):
added p50 = p50 through the proxy − p50 direct.

Ends with RESULT lines (targets from issue 8: ≥ 0.3× nginx's req/s; added p50 ≤ 1 ms).
Without wrk or nginx it says so and exits 0.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from minisys.testing import RealServer, can_connect, free_port, nginx_server  # noqa: E402

BENCH_KEY = "minisys-bench-key"


# The inside of nginx's http block (minisys.testing.nginx_server writes the rest).
NGINX_HTTP = """
    keepalive_requests 1000000;
    limit_req_zone $binary_remote_addr zone=api:10m rate=1000000r/s;
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{upstream};
        location / {{ return 200 "ok"; }}
    }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            limit_req zone=api burst=100000 nodelay;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}"""

ENGINE_PROXY = """
import asyncio, sys
from minisys.http.client import HttpClient
from minisys.http.message import Response
from minisys.http.server import HttpSettings, http_server
from minisys.server import ServerConfig, serve

client = HttpClient(pool_size_per_origin=64)
upstream = int(sys.argv[2])


async def handle(request):
    reply = await client.request("GET", ("127.0.0.1", upstream, request.target), [("Host", "x")])
    return Response(reply.status, [("Content-Type", "text/plain")], reply.body)


server = http_server("engine", ServerConfig(port=int(sys.argv[1]), log_level="warning"), handle,
                     settings=HttpSettings(server_header=""))
asyncio.run(serve(server))
"""

GATEWAY_TOML = """
[gateway]
access_log = false

[upstreams.app]
members = ["127.0.0.1:{upstream}"]
pool_size = 64

[[routes]]
name = "app"
path = "/"
upstream = "app"
auth = true

[consumers.bench]
keys = ["{key}"]
limit = {{ quota = 1000000, window = 1 }}
"""


def parse_wrk(out: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result = {"rps": float(rps.group(1)) if rps else 0.0}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{pct}"] = float(m.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def wrk(port: int, duration: float, connections: int, threads: int, key: bool) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    if key:
        cmd += ["-H", f"X-API-Key: {BENCH_KEY}"]
    cmd.append(f"http://127.0.0.1:{port}/bench")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    return parse_wrk(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        print(f"bench/gateway.py: skipped, not installed: {', '.join(missing)}")
        return 0

    upstream, proxy, gw_port, engine_port = free_port(), free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="minisys-bench-gw-") as tmp, ExitStack() as stack:
        toml = Path(tmp) / "gateway.toml"
        toml.write_text(GATEWAY_TOML.format(upstream=upstream, key=BENCH_KEY))
        engine = Path(tmp) / "engine_proxy.py"
        engine.write_text(ENGINE_PROXY)
        env = {"PYTHONPATH": str(REPO)}
        gateway = [sys.executable, "-m", "gateway", "--port", str(gw_port), "--admin-port", "0"]
        gateway += ["--config", str(toml), "--log-level", "warning"]
        nginx_http = NGINX_HTTP.format(upstream=upstream, proxy=proxy)
        stack.enter_context(
            nginx_server(
                tmp, nginx_http, proxy, connections=4096,
                ready=lambda p: can_connect(p) and can_connect(upstream),
            )
        )  # fmt: skip
        for argv, port, ready in (
            (gateway, gw_port, can_connect),
            (
                [sys.executable, str(engine), str(engine_port), str(upstream)],
                engine_port,
                can_connect,
            ),
        ):
            stack.enter_context(RealServer(argv, port, ready=ready, env=env))
        targets = {
            "direct": (upstream, False),
            "gateway": (gw_port, True),
            "engine": (engine_port, False),
            "nginx": (proxy, False),
        }
        for port, key in targets.values():
            wrk(port, 1, args.connections, args.threads, key)  # warm up pools and caches
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (port, key) in targets.items():
                runs[name].append(wrk(port, args.duration, args.connections, args.threads, key))
        single = {
            name: wrk(port, min(args.duration, 3.0), 1, 1, key)
            for name, (port, key) in targets.items()
        }

    def best(name: str, field: str) -> float:
        values = [r.get(field, 0.0) for r in runs[name]]
        return max(values) if field == "rps" else min(values)

    header = f"{'target':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
    print(f"{header}  (c={args.connections})")
    for name in runs:
        for r in runs[name]:
            print(
                f"{name:<8} {r['rps']:>10.0f} {r.get('p50', 0):>8.2f} {r.get('p99', 0):>8.2f} "
                f"{r['non2xx']:>8.0f}"
            )
    print("one connection (latency):")
    for name, r in single.items():
        print(f"{name:<8} {r['rps']:>10.0f} {r.get('p50', 0):>8.3f} {r.get('p99', 0):>8.3f}")
    ours, peer = best("gateway", "rps"), max(best("nginx", "rps"), 1e-9)
    print(f"RESULT gateway_rps: ours={ours:.0f} peer={peer:.0f} ratio={ours / peer:.2f} target=0.3")
    p99_ours, p99_peer = best("gateway", "p99"), best("nginx", "p99")
    print(
        f"RESULT gateway_p99_ms: ours={p99_ours:.2f} peer={p99_peer:.2f} "
        f"ratio={p99_ours / max(p99_peer, 1e-9):.2f} target=none"
    )
    engine_rps = max(best("engine", "rps"), 1e-9)
    print(
        f"RESULT gateway_vs_engine_rps: ours={ours:.0f} peer={engine_rps:.0f} "
        f"ratio={ours / engine_rps:.2f} target=none"
    )
    added = single["gateway"].get("p50", 0) - single["direct"].get("p50", 0)
    added_peer = single["nginx"].get("p50", 0) - single["direct"].get("p50", 0)
    print(
        f"RESULT gateway_added_p50_ms: ours={added:.3f} peer={added_peer:.3f} "
        f"ratio={added / max(added_peer, 1e-3):.2f} target=1.0"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
