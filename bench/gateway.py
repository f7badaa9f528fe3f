"""Benchmark: the gateway vs nginx as a reverse proxy, both in front of the same upstream.

    python bench/gateway.py [--duration 5] [--connections 50] [--rounds 2] [--workers 2]

Targets, measured with wrk in alternating rounds so machine noise hits all alike:

    direct    wrk → upstream                      (what the upstream alone can do)
    floor     wrk → bare asyncio proxy → upstream (two Protocols splicing fixed bytes,
                                                   no HTTP parsing: what the event loop
                                                   and the syscalls alone cost)
    engine    wrk → bare proxy → upstream         (the same HTTP server + pooled client
                                                   with no gateway logic: the floor cost
                                                   of one Python process proxying HTTP)
    engine-now  the same on the engine's callback fast path (handle_now + request_now,
                no Task or future per request: the path the gateway's usual request takes)
    gateway   wrk → python -m gateway → upstream  (API key auth + token bucket on)
    nginx     wrk → nginx proxy_pass → upstream   (limit_req on, keep-alive upstream)
    gateway×N, nginx×N   the same with N processes each (`--workers N` for the gateway,
                         `worker_processes N` for nginx; `--workers 1` skips them)

The upstream is its own one-worker nginx answering `200 ok` from memory, so it is never
the bottleneck and never shares a process with a proxy. Proxies log nothing and the
limits are set high enough never to trigger. Besides req/s, every target's CPU time per
request is measured from /proc (utime + stime of the process and its children, over the
requests wrk counted): on this shared machine req/s swings with the neighbours, the CPU
cost of a request much less.

Added latency is measured separately with one connection (no queueing):
added p50 = p50 through the proxy − p50 direct.

Ends with RESULT lines (targets from issue 8: ≥ 0.3× nginx's req/s, one process against
one worker and N against N; added p50 ≤ 1 ms). Without wrk or nginx it says so, exits 0.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from minisys.testing import RealServer, free_port, nginx_server  # noqa: E402

BENCH_KEY = "minisys-bench-key"


# The inside of nginx's http block (minisys.testing.nginx_server writes the rest).
NGINX_UPSTREAM = """
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{upstream};
        location / {{ return 200 "ok"; }}
    }}"""

NGINX_PROXY = """
    keepalive_requests 1000000;
    limit_req_zone $binary_remote_addr zone=api:10m rate=1000000r/s;
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 64; }}
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

# Two Protocols splicing fixed bytes: a request in → one fixed request to the upstream on
# this client's own upstream connection → its response out. No parsing, no Task, no
# future: the least one asyncio process can do per proxied request.
FLOOR_PROXY = """
import asyncio, sys

REQUEST = b"GET /bench HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
RESPONSE = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"
BUFFER = memoryview(bytearray(65536))  # reads go here, as in the engine (BufferedReads)


class Upstream(asyncio.BufferedProtocol):
    def __init__(self, client):
        self.client = client

    def connection_made(self, transport):
        self.transport = transport
        self.client.upstream_ready(self)

    def get_buffer(self, hint):
        return BUFFER

    def buffer_updated(self, n):  # the upstream answers `ok` to each request
        for _ in range(bytes(BUFFER[:n]).count(b"\\r\\n\\r\\nok")):
            self.client.transport.write(RESPONSE)


class Client(asyncio.BufferedProtocol):
    def connection_made(self, transport):
        self.transport, self.upstream, self.waiting = transport, None, 0
        loop = asyncio.get_running_loop()
        loop.create_task(loop.create_connection(lambda: Upstream(self), "127.0.0.1", UP))

    def upstream_ready(self, upstream):
        self.upstream = upstream
        upstream.transport.write(REQUEST * self.waiting)

    def get_buffer(self, hint):
        return BUFFER

    def buffer_updated(self, n):
        count = bytes(BUFFER[:n]).count(b"\\r\\n\\r\\n")
        if self.upstream is None:
            self.waiting += count
        else:
            self.upstream.transport.write(REQUEST * count)


async def main():
    await asyncio.get_running_loop().create_server(Client, "127.0.0.1", int(sys.argv[1]))
    await asyncio.Event().wait()


UP = int(sys.argv[2])
asyncio.run(main())
"""

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

# The same proxy on the engine's callback fast path (HttpConnection.handle_now and
# HttpClient.request_now, what the gateway's usual request takes): no Task, no future.
ENGINE_NOW_PROXY = """
import asyncio, sys
from minisys.http.client import HttpClient
from minisys.http.message import Response
from minisys.http.server import HttpConnection, HttpSettings, http_server
from minisys.server import ServerConfig, serve

client = HttpClient(pool_size_per_origin=64)
upstream = int(sys.argv[2])


async def handle(request):  # the general path: the first request of each pooled connection
    reply = await client.request("GET", ("127.0.0.1", upstream, request.target), [("Host", "x")])
    return Response(reply.status, [("Content-Type", "text/plain")], reply.body)


class Now(HttpConnection):
    def handle_now(self, request):
        def then(reply, exc):
            if exc is not None:
                return self.answer_now(request, Response(502, [], b""))
            headers = [("Content-Type", "text/plain")]
            self.answer_now(request, Response(reply.status, headers, reply.body))

        url = ("127.0.0.1", upstream, request.target)
        self.cancel_now = client.request_now("GET", url, [("Host", "x")], b"", then)
        return self.cancel_now is not None


server = http_server("engine", ServerConfig(port=int(sys.argv[1]), log_level="warning"), handle,
                     settings=HttpSettings(server_header=""), connection_factory=Now)
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


TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live child processes."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def parse_wrk(out: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    result = {"rps": float(rps.group(1)) if rps else 0.0}
    result["requests"] = float(count.group(1)) if count else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{pct}"] = float(m.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def wrk(
    port: int, duration: float, connections: int, threads: int, key: bool, pid: int = 0
) -> dict[str, float]:
    """One wrk run; with `pid`, also the CPU µs that process tree spent per request."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    if key:
        cmd += ["-H", f"X-API-Key: {BENCH_KEY}"]
    cmd.append(f"http://127.0.0.1:{port}/bench")
    before = tree_cpu(pid) if pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    result = parse_wrk(out)
    if pid and result["requests"]:
        result["cpu_us"] = (tree_cpu(pid) - before) / result["requests"] * 1e6
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="N for the ×N pairing; 1 = skip")
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        print(f"bench/gateway.py: skipped, not installed: {', '.join(missing)}")
        return 0

    n = args.workers
    with tempfile.TemporaryDirectory(prefix="minisys-bench-gw-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        upstream = free_port()
        (root / "up").mkdir()
        stack.enter_context(
            nginx_server(root / "up", NGINX_UPSTREAM.format(upstream=upstream), upstream)
        )
        toml = root / "gateway.toml"
        toml.write_text(GATEWAY_TOML.format(upstream=upstream, key=BENCH_KEY))
        (root / "engine_proxy.py").write_text(ENGINE_PROXY)
        (root / "engine_now_proxy.py").write_text(ENGINE_NOW_PROXY)
        (root / "floor_proxy.py").write_text(FLOOR_PROXY)
        env = {"PYTHONPATH": str(REPO)}

        def gateway(workers: int) -> RealServer:
            port = free_port()
            argv = [sys.executable, "-m", "gateway", "--port", str(port), "--admin-port", "0"]
            argv += ["--config", str(toml), "--log-level", "warning", "--workers", str(workers)]
            return stack.enter_context(RealServer(argv, port, env=env))

        def script(name: str) -> RealServer:
            port = free_port()
            argv = [sys.executable, str(root / name), str(port), str(upstream)]
            return stack.enter_context(RealServer(argv, port, env=env))

        def nginx(workers: int) -> RealServer:
            port = free_port()
            workdir = root / f"nginx{workers}"
            workdir.mkdir()
            http = NGINX_PROXY.format(upstream=upstream, proxy=port)
            server = nginx_server(workdir, http, port, connections=4096, workers=workers)
            return stack.enter_context(server)

        # name -> (port, send the API key?, pid whose CPU is measured)
        targets: dict[str, tuple[int, bool, int]] = {"direct": (upstream, False, 0)}
        for name, server, key in (
            ("floor", script("floor_proxy.py"), False),
            ("engine", script("engine_proxy.py"), False),
            ("engine-now", script("engine_now_proxy.py"), False),
            ("gateway", gateway(1), True),
            ("nginx", nginx(1), False),
        ):
            targets[name] = (server.port, key, server.pid)
        if n > 1:  # CPU of the supervisor's (or nginx master's) whole process tree
            for name, server, key in (
                (f"gateway×{n}", gateway(n), True),
                (f"nginx×{n}", nginx(n), False),
            ):
                targets[name] = (server.port, key, server.pid)
        for port, key, _ in targets.values():
            wrk(port, 1, args.connections, args.threads, key)  # warm up pools and caches
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (port, key, pid) in targets.items():
                runs[name].append(
                    wrk(port, args.duration, args.connections, args.threads, key, pid)
                )
        single = {
            name: wrk(port, min(args.duration, 3.0), 1, 1, key)
            for name, (port, key, _) in targets.items()
            if name in ("direct", "engine", "gateway", "nginx")
        }

    def best(name: str, field: str) -> float:
        values = [r.get(field, 0.0) for r in runs[name]]
        return max(values) if field == "rps" else min(values)

    header = f"{'target':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
    header += f" {'cpu µs/req':>11}"
    print(f"{header}  (c={args.connections})")
    for name in runs:
        for r in runs[name]:
            cpu = f"{r['cpu_us']:>11.0f}" if "cpu_us" in r else f"{'-':>11}"
            print(
                f"{name:<10} {r['rps']:>10.0f} {r.get('p50', 0):>8.2f} {r.get('p99', 0):>8.2f} "
                f"{r['non2xx']:>8.0f} {cpu}"
            )
    print("one connection (latency):")
    for name, r in single.items():
        print(f"{name:<10} {r['rps']:>10.0f} {r.get('p50', 0):>8.3f} {r.get('p99', 0):>8.3f}")

    def result(label: str, ours: float, peer: float, target: str, fmt: str = ".0f") -> None:
        ratio = ours / peer if peer else 0.0
        print(
            f"RESULT {label}: ours={ours:{fmt}} peer={peer:{fmt}} ratio={ratio:.2f} target={target}"
        )

    result("gateway_rps", best("gateway", "rps"), best("nginx", "rps"), "0.3")
    result("gateway_p99_ms", best("gateway", "p99"), best("nginx", "p99"), "none", ".2f")
    result("gateway_vs_engine_rps", best("gateway", "rps"), best("engine", "rps"), "none")
    added = single["gateway"].get("p50", 0) - single["direct"].get("p50", 0)
    added_peer = single["nginx"].get("p50", 0) - single["direct"].get("p50", 0)
    print(
        f"RESULT gateway_added_p50_ms: ours={added:.3f} peer={added_peer:.3f} "
        f"ratio={added / max(added_peer, 1e-3):.2f} target=1.0"
    )
    result("gateway_cpu_us_per_req", best("gateway", "cpu_us"), best("nginx", "cpu_us"), "none")
    result("engine_cpu_us_per_req", best("engine", "cpu_us"), best("floor", "cpu_us"), "none")
    result(
        "engine_now_cpu_us_per_req", best("engine-now", "cpu_us"), best("floor", "cpu_us"), "none"
    )
    if n > 1:
        result(
            f"gateway_workers{n}_rps", best(f"gateway×{n}", "rps"), best(f"nginx×{n}", "rps"), "0.3"
        )
        result(
            f"gateway_workers{n}_cpu_us_per_req",
            best(f"gateway×{n}", "cpu_us"), best(f"nginx×{n}", "cpu_us"), "none",
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
