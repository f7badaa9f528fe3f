"""Benchmark the lb against HAProxy `mode tcp`, both in front of the same backend.

    python bench/lb.py [--workers 2] [--duration 2] [--rounds 3] [--connections 50]
                       [--pace-share 0.5] [--pace-rate 1000] [--pace-rounds 3]
                       [--pace-seconds 4] [--profile]

One backend (nginx answering a fixed 200, or a small asyncio HTTP server when nginx is
missing) is measured with wrk, alternating (in reverse order every other round) so that
machine noise hits every target alike:

    direct    the backend itself
    lb        python -m lb --workers N        (N processes; the RESULT lines)
    haproxy   haproxy mode tcp, nbthread N    (N threads; the RESULT lines)
    lb-1      python -m lb, one process       (the single-process hot path)
    haproxy-1 haproxy, nbthread 1             (one thread: the like-for-like peer of lb-1)
    bare      a 40-line asyncio splice        (idiomatic asyncio: two Protocols, no lb logic)

N defaults to the number of cores, so both proxies may use the whole machine: the
comparison is the same number of threads/processes on each side, and it is printed.
Both run in front of the same nginx, under the same wrk. On a 2-core machine that also
runs wrk's 2 threads and nginx, req/s is set by the CPU *all* of them spend per request,
so a second proxy process/thread only helps when a core is idle; the one-process pair
(lb-1, haproxy-1) shows the other side of that.
Each round runs keep-alive (one connection carries many requests: the splice path) and
`Connection: close` (a new TCP connection per request: the accept + connect path). Next
to req/s it prints the CPU each proxy used per request (all its processes/threads, from
/proc), the figure least disturbed by other programs sharing the machine, and where the
cores went during the run (`cores:` proxy, backend, wrk, idle, other programs; /proc and
wait4). On two cores shared by the whole chain, req/s ≈ the CPU the chain gets / the CPU
it spends per request (proxy + wrk + nginx): those lines show whether a figure was set
by the proxy's CPU, by idle time, or by other programs taking the cores.

The latency a hop adds cannot be read from saturated wrk runs (closed-loop load measures
queueing). So a paced, open-loop probe follows (bench/lb_probe.py): direct, lb and
haproxy are probed *at the same time* at the same rate, 50 keep-alive connections
each at `--pace-share` of the slowest measured keep-alive capacity (capped at
`--pace-rate` per target), each latency counted from the request's *scheduled* time
(wrk2's correction). Whatever slows the shared machine or the Python pacer in a given
second hits every target alike, so lb p99 minus direct p99 *within one run* is the hop's
cost; the pacer also reports how late its own timers fired, and a control target
(`direct-2`, more connections to the backend itself) shows how far the machine alone
moves a p99 between two identical targets in the same run. The RESULT lines (medians
over the rounds; the added p99 is the median of the per-round differences):

    RESULT lb_keepalive_rps: ours=… peer=… ratio=… target=0.8
    RESULT lb_close_rps: ours=… peer=… ratio=… target=0.35
    RESULT lb_added_p99_ms: ours=… peer=… ratio=… target=1.0   (ms over direct; lower is better)

plus `RESULT lb_keepalive_rps_1proc` (lb-1 vs haproxy-1) when N > 1.

`--profile` also runs a one-process lb under cProfile during one `Connection: close` run
and prints where the accept + connect path spends its time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lb_probe import probe  # noqa: E402  (bench/lb_probe.py, next to this file)

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

# Idiomatic asyncio: the least a Transport/Protocol splice does (no pool, limits, counters).
# The lb splices raw sockets instead (lb/splice.py) and now costs less than this.
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

# The paced probe's default rate per target (four targets at once: 4000 req/s for the
# Python pacer, which kept its timers within ~1.1 ms (p99) at 3000 in a calmer minute).
PACE_RATE = 1000.0
# Above this pacer lateness (p99, ms) the bench warns that the machine was too busy.
PACER_SLACK_MS = 1.0


def wrk(port: int, duration: float, connections: int, close: bool) -> tuple[float, float, float]:
    """Run wrk; return (requests per second, p99 latency in ms, wrk's own CPU seconds)."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    child = subprocess.Popen([*cmd, f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # wait4: the child's CPU time comes with it
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, cmd, out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"    (wrk socket errors: {errors.group(1).strip()})")
    return rps, p99, usage.ru_utime + usage.ru_stime


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


def machine_jiffies() -> tuple[int, int]:
    """(idle, total) CPU time of the whole machine so far, all cores, in clock ticks."""
    ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return ticks[3] + ticks[4], sum(ticks)  # idle + iowait; user … steal


def shares(proxy: float, backend: float, client: float, idle: int, total: int) -> dict:
    """Where the machine's cores went during one wrk run, in % of one core."""
    cores = os.cpu_count() or 1
    wall = total / os.sysconf("SC_CLK_TCK") / cores  # seconds the run took
    used = {"proxy": proxy, "backend": backend, "wrk": client}
    out = {k: v / wall * 100 for k, v in used.items()}
    out["idle"] = idle / total * cores * 100
    out["other"] = max(0.0, cores * 100 - sum(out.values()))  # other programs
    return out


def result(name: str, ours: float, peer: float, target: float | str, digits: int = 0) -> None:
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
        rps, _, _ = wrk(port, duration, connections, close=True)
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
    p.add_argument("--pace-rate", type=float, default=PACE_RATE, help="req/s per target, max")
    p.add_argument("--pace-rounds", type=int, default=3)
    p.add_argument("--pace-seconds", type=float, default=4.0)
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
                # ABBA: every other round runs the targets in reverse order, so that a
                # load trend on the shared machine does not always favour the same ones.
                order = list(targets.items())
                for name, (port, proc) in order[::-1] if r % 2 else order:
                    cpu0, back0 = cpu_seconds(proc), cpu_seconds(backend_proc)
                    idle0, total0 = machine_jiffies()
                    rps, p99, client = wrk(port, args.duration, args.connections, close)
                    idle1, total1 = machine_jiffies()
                    used = cpu_seconds(proc) - cpu0 if name != "direct" else 0.0
                    back = cpu_seconds(backend_proc) - back0
                    cpu_us = used * 1e6 / max(1.0, rps * args.duration)
                    share = shares(used, back, client, idle1 - idle0, total1 - total0)
                    rest_us = (back + client) * 1e6 / max(1.0, rps * args.duration)
                    runs.setdefault((name, close), []).append(
                        (rps, p99, cpu_us, rest_us, share["idle"], share["other"])
                    )
                    mode = "close     " if close else "keep-alive"
                    cpu = f"{cpu_us:6.1f} us CPU/req" if name != "direct" else " " * 16
                    line = f"{mode} {name:9} {rps:9.0f} req/s  p99 {p99:7.2f} ms  {cpu}"
                    cores = "  ".join(f"{k} {v:3.0f}%" for k, v in share.items())
                    print(f"  round {r + 1} {line}  cores: {cores}", flush=True)

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

        # On two cores shared with wrk and nginx, req/s = the CPU the chain gets / the CPU
        # the whole chain spends per request. These lines show both for each target.
        print("keep-alive, medians: CPU per request of the proxy and of wrk + nginx, idle, other:")
        for name in targets:
            print(
                f"  {name:9} proxy {med(name, False, 2):5.1f} us + wrk/nginx "
                f"{med(name, False, 3):5.1f} us; idle {med(name, False, 4):3.0f}%, "
                f"other programs {med(name, False, 5):3.0f}% (of {100 * (os.cpu_count() or 1)}%)"
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

        # "direct-2" is a control: a second set of connections to the backend itself. Its
        # difference from "direct" is what the machine alone does to a p99 in one run.
        names = ["direct", "direct-2", *(t for t in ("lb", "haproxy") if t in targets)]
        slowest = min(med(t, False, 0) for t in names if t != "direct-2")
        rate = min(args.pace_share * slowest, args.pace_rate)
        print(
            f"paced probe: {', '.join(names)} at once, {args.connections} connections and "
            f"{rate:.0f} req/s each (<= {args.pace_share:g} x the slowest keep-alive capacity "
            f"{slowest:.0f}, capped at {args.pace_rate:g}), {args.pace_seconds:g} s per round; "
            "latency from each request's scheduled time (service: from its send)"
        )
        probes = []
        for r in range(args.pace_rounds):
            ports = {name: targets[name.removesuffix("-2")][0] for name in names}
            run = probe(ports, rate, args.pace_seconds, args.connections)
            probes.append(run)
            shown = "  ".join(
                f"{n} {run.p50[n]:.2f}/{run.p99[n]:.2f} ({run.service_p99[n]:.2f})" for n in names
            )
            added = "  ".join(f"{n} {run.p99[n] - run.p99['direct']:+.2f}" for n in names[1:])
            print(
                f"  round {r + 1} p50/p99 (service p99) ms: {shown}; "
                f"pacer late p50 {run.pacer_p50:.2f} p99 {run.pacer_p99:.2f}; "
                f"{min(run.count.values())} samples each; added p99: {added}"
            )
        late = max(run.pacer_p99 for run in probes)
        if late > PACER_SLACK_MS:
            print(
                f"  WARNING: the pacer's own timers ran up to {late:.1f} ms late (p99): every "
                "target's p99 carries that; the added p99 (a difference) less so"
            )
        if args.profile:
            profile(backend, tmp, args.duration, args.connections)

        def added(name: str) -> float:
            if name not in probes[0].p99:
                return float("nan")
            return statistics.median(run.p99[name] - run.p99["direct"] for run in probes)

        print(
            f"  added p99, medians over the rounds: lb {added('lb'):+.2f} ms, haproxy "
            f"{added('haproxy'):+.2f} ms; the control direct-2 {added('direct-2'):+.2f} ms "
            "(what the machine alone moves a p99 by)"
        )

        if not haproxy:
            print("haproxy is not installed: comparing with direct instead")
        peer = "haproxy" if haproxy else "direct"
        result("lb_keepalive_rps", med("lb", False, 0), med(peer, False, 0), 0.8)
        result("lb_close_rps", med("lb", True, 0), med(peer, True, 0), 0.35)
        if "lb-1" in targets and "haproxy-1" in targets:
            # The same figure for one process vs one thread (see "two cores" above).
            one = med("lb-1", False, 0), med("haproxy-1", False, 0)
            result("lb_keepalive_rps_1proc", *one, "none")
        result("lb_added_p99_ms", added("lb"), added(peer), 1.0, digits=2)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
