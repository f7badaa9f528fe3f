"""Benchmark the lb against HAProxy `mode tcp`, both in front of the same backend.

    python bench/lb.py [--duration 5] [--rounds 3] [--connections 50] [--profile]

One backend (nginx answering a fixed 200, or a small asyncio HTTP server when nginx is
missing) is measured three ways with wrk, alternating so that machine noise hits all
three alike: directly, through `python -m lb`, and through `haproxy` in `mode tcp`. Each
round runs keep-alive (one connection carries many requests: the splice path) and
`Connection: close` (a new TCP connection per request: the accept + connect path).

Ends with one line per figure (medians over the rounds):

    RESULT lb_keepalive_rps: ours=… peer=… ratio=… target=0.8
    RESULT lb_close_rps: ours=… peer=… ratio=… target=0.35
    RESULT lb_added_p99_ms: ours=… peer=… ratio=… target=1.0   (ms over direct; lower is better)

The added p99 comes from a paced probe (50 keep-alive connections, each sending a request
every 50 ms) rather than from saturated wrk runs, whose percentiles measure queueing.

`--profile` also runs the lb under cProfile during one `Connection: close` run and prints
where the accept + connect path spends its time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minisys.testing import RealServer, free_port, nginx_server  # noqa: E402

# The inside of nginx's http block (minisys.testing.nginx_server writes the rest).
NGINX_HTTP = """
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "hello\\n"; }}
    }}"""

HAPROXY_CONF = """
global
    maxconn 8000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend bench
    bind 127.0.0.1:{port}
    default_backend app
backend app
    server app1 127.0.0.1:{backend}
"""

# The fallback backend when nginx is missing: a tiny asyncio HTTP server.
PY_BACKEND = """
import asyncio, sys
REPLY = b"HTTP/1.1 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nhello\\n"
CLOSE = b"HTTP/1.1 200 OK\\r\\nContent-Length: 6\\r\\nConnection: close\\r\\n\\r\\nhello\\n"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        while b"\\r\\n\\r\\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\\r\\n\\r\\n")
            if b"close" in head.lower():
                self.t.write(CLOSE); self.t.close(); return
            self.t.write(REPLY)
async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await s.serve_forever()
asyncio.run(main())
"""


def start_backend(tmp: str) -> tuple[RealServer, int, str]:
    port = free_port()
    if shutil.which("nginx"):
        server = nginx_server(tmp, NGINX_HTTP.format(port=port), port, connections=4096)
        return server.start(), port, "nginx"
    argv = [sys.executable, "-c", PY_BACKEND, str(port)]
    return RealServer(argv, port).start(), port, "python asyncio"


def start_haproxy(tmp: str, backend: int) -> tuple[RealServer | None, int]:
    if not shutil.which("haproxy"):
        return None, 0
    port = free_port()
    conf = Path(tmp, "haproxy.cfg")
    conf.write_text(HAPROXY_CONF.format(port=port, backend=backend))
    return RealServer(["haproxy", "-db", "-f", str(conf)], port).start(), port


def start_lb(backend: int, profile_to: str | None = None) -> tuple[RealServer, int]:
    port = free_port()
    args = ["-m", "lb", "--port", str(port), "--admin-port", "-1", "--health", "none"]
    args += ["--backend", f"127.0.0.1:{backend}", "--log-level", "warning"]
    if profile_to:
        args = ["-m", "cProfile", "-o", profile_to, *args]
    env = {"PYTHONPATH": str(ROOT)}
    return RealServer([sys.executable, *args], port, env=env).start(), port


def stop(proc: RealServer | None) -> None:
    if proc is not None:
        proc.stop()


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(port: int, duration: float, connections: int, close: bool) -> tuple[float, float]:
    """Run wrk; return (requests per second, p99 latency in ms)."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"    (wrk socket errors: {errors.group(1).strip()})")
    return rps, p99


# The paced latency probe: each of 50 keep-alive connections sends one request every
# PACE seconds, so the targets are far from saturated and a percentile measures the
# latency a hop adds rather than how long requests queue at full load.
PACE = 0.05
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


async def _paced_connection(port: int, until: float, samples: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    next_at = loop.time() + random.random() * PACE
    try:
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            start = time.perf_counter()
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            samples.append((time.perf_counter() - start) * 1000)
            next_at += PACE
    finally:
        writer.close()


def paced_p99(port: int, duration: float, connections: int) -> float:
    """p99 latency in ms of requests sent at a modest, fixed pace."""

    async def run() -> list[float]:
        samples: list[float] = []
        until = asyncio.get_running_loop().time() + duration
        await asyncio.gather(*(_paced_connection(port, until, samples) for _ in range(connections)))
        return samples

    samples = sorted(asyncio.run(run()))
    return samples[int(len(samples) * 0.99)] if samples else float("nan")


def cpu_seconds(proc: RealServer | None) -> float:
    """User + system CPU the process (all its threads) has used so far, from /proc."""
    if proc is None:
        return 0.0
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def result(name: str, ours: float, peer: float, target: float, digits: int = 0) -> None:
    ratio = ours / peer if peer else float("nan")
    fmt = f"{{:.{digits}f}}"
    print(
        f"RESULT {name}: ours={fmt.format(ours)} peer={fmt.format(peer)} "
        f"ratio={ratio:.2f} target={target}"
    )


def profile(backend: int, tmp: str, duration: float, connections: int) -> None:
    import pstats

    out = os.path.join(tmp, "lb.prof")
    proc, port = start_lb(backend, profile_to=out)
    try:
        rps, _ = wrk(port, duration, connections, close=True)
        print(f"\nprofiled lb, Connection: close: {rps:.0f} req/s (slowed by cProfile)")
    finally:
        stop(proc)
    stats = pstats.Stats(out)
    stats.sort_stats("tottime").print_stats(25)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk")
        return 1
    tmp = tempfile.mkdtemp(prefix="bench-lb-")
    procs: list[RealServer | None] = []
    try:
        backend_proc, backend, kind = start_backend(tmp)
        procs.append(backend_proc)
        haproxy, haproxy_port = start_haproxy(tmp, backend)
        procs.append(haproxy)
        lb, lb_port = start_lb(backend)
        procs.append(lb)
        targets = {"direct": (backend, backend_proc), "lb": (lb_port, lb)}
        if haproxy:
            targets["haproxy"] = (haproxy_port, haproxy)
        print(f"backend: {kind}; wrk -t2 -c{args.connections} -d{args.duration:g}s; 2 cores shared")
        # CPU per request of the process under test (the proxy itself, or the backend for
        # "direct") is the figure least disturbed by other programs sharing the machine.
        runs: dict[tuple[str, bool], list[tuple[float, float, float]]] = {}
        for r in range(args.rounds):
            for close in (False, True):
                for name, (port, proc) in targets.items():
                    before = cpu_seconds(proc)
                    rps, p99 = wrk(port, args.duration, args.connections, close)
                    cpu_us = (cpu_seconds(proc) - before) * 1e6 / max(1.0, rps * args.duration)
                    runs.setdefault((name, close), []).append((rps, p99, cpu_us))
                    mode = "close     " if close else "keep-alive"
                    cpu = f"{cpu_us:6.1f} us CPU/req" if name != "direct" else ""
                    line = f"{mode} {name:8} {rps:9.0f} req/s  p99 {p99:7.2f} ms  {cpu}"
                    print(f"  round {r + 1} {line}")
        paced: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, (port, _) in targets.items():
                paced.setdefault(name, []).append(
                    paced_p99(port, min(args.duration, 3.0), args.connections)
                )
        for name, values in paced.items():
            shown = " ".join(f"{v:.2f}" for v in values)
            print(f"  paced {args.connections} x {1 / PACE:.0f} req/s  {name:8} p99 ms: {shown}")
        if args.profile:
            stop(lb)
            procs.remove(lb)
            profile(backend, tmp, args.duration, args.connections)

        def med(name: str, close: bool, i: int) -> float:
            values = [run[i] for run in runs.get((name, close), [])]
            return statistics.median(values) if values else float("nan")

        if not haproxy:
            print("haproxy is not installed: comparing with direct instead")
        else:
            print(
                "proxy CPU per request (medians; haproxy uses every core, we use one): "
                f"keep-alive lb {med('lb', False, 2):.1f} us vs haproxy "
                f"{med('haproxy', False, 2):.1f} us; close lb {med('lb', True, 2):.1f} us "
                f"vs haproxy {med('haproxy', True, 2):.1f} us"
            )
        peer = "haproxy" if haproxy else "direct"
        result("lb_keepalive_rps", med("lb", False, 0), med(peer, False, 0), 0.8)
        result("lb_close_rps", med("lb", True, 0), med(peer, True, 0), 0.35)
        direct_p99 = statistics.median(paced["direct"])
        result(
            "lb_added_p99_ms",
            statistics.median(paced["lb"]) - direct_p99,
            statistics.median(paced[peer]) - direct_p99,
            1.0,
            digits=2,
        )
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
