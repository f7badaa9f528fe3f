"""Benchmark the lb against HAProxy `mode tcp`, both in front of the same backend.

    python bench/lb.py [--workers 2] [--duration 2] [--rounds 3] [--connections 50]
                       [--pace-share 0.5] [--pace-max 2000] [--profile]

One backend (nginx answering a fixed 200, or a small asyncio HTTP server when nginx is
missing) is measured with wrk, alternating so that machine noise hits every target alike:

    direct    the backend itself
    lb        python -m lb --workers N        (N processes; the RESULT lines)
    haproxy   haproxy mode tcp, nbthread N    (N threads; the RESULT lines)
    lb-1      python -m lb, one process       (the single-process hot path)
    haproxy-1 haproxy, nbthread 1             (one thread: the like-for-like peer of lb-1)
    bare      a 40-line asyncio splice        (the floor for one asyncio process)

N defaults to the number of cores, so both proxies may use the whole machine: the
comparison is the same number of threads/processes on each side, and it is printed.
Each round runs keep-alive (one connection carries many requests: the splice path) and
`Connection: close` (a new TCP connection per request: the accept + connect path). Next
to req/s it prints the CPU each proxy used per request (all its processes/threads, from
/proc), the figure least disturbed by other programs sharing the machine.

The latency a hop adds cannot be read from saturated wrk runs (closed-loop load measures
queueing). So a paced, open-loop probe follows: 50 keep-alive connections send requests
on a fixed schedule at `--pace-share` of the slowest target's measured keep-alive
capacity (capped at `--pace-max`, about what this Python pacer sustains on one core, and
halved while the pacer's own timers run more than 2 ms late (p99) against the backend), and
each latency is counted from the request's *scheduled* time, so a stall delays every
request behind it as it would for real users (wrk2's correction). It prints p50/p99 of
direct, lb and haproxy, and ends with one line per figure (medians over the rounds):

    RESULT lb_keepalive_rps: ours=… peer=… ratio=… target=0.8
    RESULT lb_close_rps: ours=… peer=… ratio=… target=0.35
    RESULT lb_added_p99_ms: ours=… peer=… ratio=… target=1.0   (ms over direct; lower is better)

`--profile` also runs a one-process lb under cProfile during one `Connection: close` run
and prints where the accept + connect path spends its time.
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
    nbthread {threads}
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

# The floor: the least an asyncio TCP splice can do (no pool, no limits, no counters).
BARE_SPLICE = """
import asyncio, sys
class Side(asyncio.Protocol):
    peer = None
    def connection_made(self, t):
        self.t = t; t.set_write_buffer_limits(high=256 * 1024)
    def data_received(self, d): self.peer.t.write(d)
    def eof_received(self):
        if self.peer.t.can_write_eof(): self.peer.t.write_eof()
        return True
    def connection_lost(self, exc): self.peer.t.close() if self.peer else None
    def pause_writing(self): self.peer.t.pause_reading()
    def resume_writing(self): self.peer.t.resume_reading()
class Client(Side):
    def connection_made(self, t):
        super().connection_made(t); t.pause_reading()
        asyncio.get_running_loop().create_task(self.connect())
    async def connect(self):
        try:
            await asyncio.get_running_loop().create_connection(lambda: self.back(), HOST, PORT)
        except OSError:
            self.t.close()
    def back(self):
        b = Side(); b.peer = self; self.peer = b
        self.t.resume_reading(); return b
HOST, PORT = "127.0.0.1", int(sys.argv[2])
async def main():
    s = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", int(sys.argv[1]))
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


def start_haproxy(tmp: str, backend: int, threads: int) -> tuple[RealServer | None, int]:
    if not shutil.which("haproxy"):
        return None, 0
    port = free_port()
    conf = Path(tmp, f"haproxy-{threads}.cfg")
    conf.write_text(HAPROXY_CONF.format(port=port, backend=backend, threads=threads))
    return RealServer(["haproxy", "-db", "-f", str(conf)], port).start(), port


def start_lb(
    backend: int, workers: int = 1, profile_to: str | None = None
) -> tuple[RealServer, int]:
    port = free_port()
    args = ["-m", "lb", "--port", str(port), "--admin-port", "-1", "--health", "none"]
    args += ["--backend", f"127.0.0.1:{backend}", "--log-level", "warning"]
    args += ["--workers", str(workers)]
    if profile_to:
        args = ["-m", "cProfile", "-o", profile_to, *args]
    env = {"PYTHONPATH": str(ROOT)}
    return RealServer([sys.executable, *args], port, env=env).start(), port


def start_bare(backend: int) -> tuple[RealServer, int]:
    port = free_port()
    argv = [sys.executable, "-c", BARE_SPLICE, str(port), str(backend)]
    return RealServer(argv, port).start(), port


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


# --- the paced (open-loop) latency probe -------------------------------------------------

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
# A paced run ends this long after its last scheduled request at the latest.
PACE_GRACE = 5.0
# The pacer's own timers may fire this late (p99, ms; asyncio's timers have 1 ms
# granularity) before the rate is lowered, at most PACE_HALVINGS times.
PACER_SLACK_MS = 2.0
PACE_HALVINGS = 2


class Paced(asyncio.Protocol):
    """One keep-alive connection that sends a request every `interval` seconds.

    At most one request is in flight (as in wrk). If a reply comes late, the next request
    goes out at once, and its latency still counts from when it was *due*. When the
    connection was idle and its timer fired late anyway, the pacer itself was slow (its
    process waited for a core): `own_lateness` records that, to tell whether a probe at
    this rate can be trusted.
    """

    def __init__(
        self, interval: float, first: float, until: float, samples: list, own_lateness: list
    ) -> None:
        self.interval = interval
        self.due = first
        self.until = until
        self.samples = samples
        self.own_lateness = own_lateness
        self.on_time = True  # the next send waits for its timer (not catching up)
        self.buf = b""
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.loop.call_at(self.due, self.send)

    def send(self) -> None:
        if self.due >= self.until:
            self.transport.close()
            return
        if self.on_time:
            self.own_lateness.append(self.loop.time() - self.due)
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        length = re.search(rb"(?i)content-length:\s*(\d+)", self.buf[:head_end])
        end = head_end + 4 + (int(length.group(1)) if length else 0)
        if len(self.buf) < end:
            return
        self.buf = self.buf[end:]
        now = self.loop.time()
        self.samples.append(now - self.due)
        self.due += self.interval
        self.on_time = now < self.due
        self.loop.call_at(max(now, self.due), self.send)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def paced(port: int, rate: float, duration: float, connections: int) -> tuple[float, float, float]:
    """Open-loop probe at `rate` req/s in total: (p50, p99, the pacer's own p99 lateness), ms."""
    own: list[float] = []

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        samples: list[float] = []
        interval = connections / rate
        start = loop.time() + 0.2
        until = start + duration
        protocols = []
        for _ in range(connections):
            first = start + random.random() * interval
            protocol = Paced(interval, first, until, samples, own)
            await loop.create_connection(lambda p=protocol: p, "127.0.0.1", port)
            protocols.append(protocol)
        await asyncio.wait([p.done for p in protocols], timeout=duration + PACE_GRACE)
        for p in protocols:
            p.transport.abort()
        return samples

    samples = sorted(asyncio.run(run()))
    if not samples:
        return float("nan"), float("nan"), float("nan")
    own.sort()
    p50 = samples[len(samples) // 2] * 1000
    p99 = samples[int(len(samples) * 0.99)] * 1000
    return p50, p99, own[int(len(own) * 0.99)] * 1000 if own else float("nan")


# --- CPU accounting ----------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (an lb with workers is a master and its children)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            children = Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()
        except OSError:
            children = []
        pids += [int(c) for c in children]
        i += 1
    return pids


def cpu_seconds(proc: RealServer | None) -> float:
    """User + system CPU the process and its children (all threads) have used so far."""
    if proc is None:
        return 0.0
    total = 0
    for pid in process_tree(proc.pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


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
    p.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="lb workers = haproxy nbthread"
    )
    p.add_argument("--pace-share", type=float, default=0.5, help="of the slowest capacity")
    p.add_argument("--pace-max", type=float, default=2000.0, help="req/s the pacer sustains")
    p.add_argument("--pace-rounds", type=int, default=2)
    p.add_argument("--only", default="", help="comma-separated targets (default: all)")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk")
        return 1
    tmp = tempfile.mkdtemp(prefix="bench-lb-")
    procs: list[RealServer | None] = []
    n = args.workers
    try:
        backend_proc, backend, kind = start_backend(tmp)
        procs.append(backend_proc)
        targets: dict[str, tuple[int, RealServer]] = {"direct": (backend, backend_proc)}
        lb, lb_port = start_lb(backend, workers=n)
        procs.append(lb)
        targets["lb"] = (lb_port, lb)
        haproxy, haproxy_port = start_haproxy(tmp, backend, n)
        procs.append(haproxy)
        if haproxy:
            targets["haproxy"] = (haproxy_port, haproxy)
        if n > 1:
            lb1, lb1_port = start_lb(backend, workers=1)
            procs.append(lb1)
            targets["lb-1"] = (lb1_port, lb1)
            haproxy1, haproxy1_port = start_haproxy(tmp, backend, 1)
            procs.append(haproxy1)
            if haproxy1:
                targets["haproxy-1"] = (haproxy1_port, haproxy1)
        bare, bare_port = start_bare(backend)
        procs.append(bare)
        targets["bare"] = (bare_port, bare)
        if args.only:
            keep = set(args.only.split(",")) | {"direct"}
            targets = {k: v for k, v in targets.items() if k in keep}
        print(
            f"backend: {kind}; wrk -t2 -c{args.connections} -d{args.duration:g}s; "
            f"{os.cpu_count()} cores shared; lb --workers {n}, haproxy nbthread {n}; "
            "lb-1, haproxy-1 and bare are one process/thread"
        )
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
                    line = f"{mode} {name:9} {rps:9.0f} req/s  p99 {p99:7.2f} ms  {cpu}"
                    print(f"  round {r + 1} {line}", flush=True)

        def med(name: str, close: bool, i: int) -> float:
            values = [run[i] for run in runs.get((name, close), [])]
            return statistics.median(values) if values else float("nan")

        print("medians (CPU per request: all processes/threads of the target, from /proc):")
        for name in targets:
            if name == "direct":
                continue
            print(
                f"  {name:9} keep-alive {med(name, False, 0):7.0f} req/s "
                f"{med(name, False, 2):6.1f} us/req   close {med(name, True, 0):6.0f} req/s "
                f"{med(name, True, 2):6.1f} us/conn"
            )

        for ours, theirs in (("lb", "haproxy"), ("lb-1", "haproxy-1"), ("lb-1", "bare")):
            if ours in targets and theirs in targets:
                print(
                    f"  {ours} / {theirs}: keep-alive "
                    f"{med(ours, False, 0) / med(theirs, False, 0):.2f}x req/s, "
                    f"{med(ours, False, 2) / med(theirs, False, 2):.2f}x CPU/req; close "
                    f"{med(ours, True, 0) / med(theirs, True, 0):.2f}x req/s, "
                    f"{med(ours, True, 2) / med(theirs, True, 2):.2f}x CPU/conn"
                )

        probe = [t for t in ("direct", "lb", "haproxy", "lb-1") if t in targets]
        slowest = min(med(t, False, 0) for t in probe)
        rate = min(args.pace_share * slowest, args.pace_max)
        pace_seconds = min(max(args.duration, 2.0), 5.0)
        # A pacer that cannot keep its own schedule measures itself: halve the rate (at
        # most PACE_HALVINGS times) until its timers fire within PACER_SLACK_MS (p99)
        # against the backend directly. If that does not help, the machine is too busy.
        for _ in range(PACE_HALVINGS):
            own = paced(targets["direct"][0], rate, 1.0, args.connections)[2]
            if own <= PACER_SLACK_MS:
                break
            print(f"  (pacer late by {own:.1f} ms p99 at {rate:.0f} req/s: halving the rate)")
            rate /= 2
        print(
            f"paced probe: {args.connections} connections, {rate:.0f} req/s in total "
            f"(<= {args.pace_share:g} x the slowest keep-alive capacity {slowest:.0f}, "
            f"capped at {args.pace_max:g}); latency from each request's scheduled time"
        )
        lat: dict[str, list[tuple[float, float, float]]] = {}
        for _ in range(args.pace_rounds):
            for name in probe:
                port = targets[name][0]
                lat.setdefault(name, []).append(paced(port, rate, pace_seconds, args.connections))
        for name, values in lat.items():
            shown = "  ".join(f"p50 {a:.2f} p99 {b:.2f} (pacer {c:.2f})" for a, b, c in values)
            print(f"  paced {name:8} ms: {shown}")
        own = max(v[2] for values in lat.values() for v in values)
        if own > PACER_SLACK_MS:
            print(
                f"  WARNING: the pacer's own timers ran up to {own:.1f} ms late (p99): the "
                "machine is too busy to judge a 1 ms target; the added p99 below is noise"
            )
        if args.profile:
            profile(backend, tmp, args.duration, args.connections)

        def lat_med(name: str, i: int) -> float:
            return statistics.median(v[i] for v in lat[name]) if name in lat else float("nan")

        if not haproxy:
            print("haproxy is not installed: comparing with direct instead")
        peer = "haproxy" if haproxy else "direct"
        result("lb_keepalive_rps", med("lb", False, 0), med(peer, False, 0), 0.8)
        result("lb_close_rps", med("lb", True, 0), med(peer, True, 0), 0.35)
        direct_p99 = lat_med("direct", 1)
        result(
            "lb_added_p99_ms",
            lat_med("lb", 1) - direct_p99,
            lat_med(peer, 1) - direct_p99,
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
