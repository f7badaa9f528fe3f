"""Benchmark mq against beanstalkd, alternating in one run.

    python bench/mq.py [--jobs 3000] [--pipeline-jobs 40000] [--replay-jobs 100000]
                       [--million] [--rounds 2] [--starts 7] [--journal-only]

Figures (each measured for mq and for beanstalkd, alternating within every round, medians
over the rounds):

    1. latency-bound: greenstalk, one client, put -> reserve -> delete per job (what an app
       sees), in memory and with an fsync per change (mq --fsync always, beanstalkd -f 0
       with -b). Beside them, the ceiling: a bare asyncio Protocol server (`--serve-bare`,
       below) answering the same three commands with canned replies and no queue, so the
       in-memory figure can be judged against what asyncio itself allows here; once with
       asyncio's default reads, once reading into a reused buffer (recv_into), and once
       on the raw-socket layer and loop mq itself runs on (`--serve-bare-direct`:
       minisys/direct.py on minisys/poller.py's ServingSelector), and once on the least a
       Python server can do (`--serve-bare-epoll`: one epoll loop, no asyncio, no
       connection layer; the floor for any pure-Python mq). For each, the server
       process's CPU time per job (/proc/<pid>/schedstat; steadier than wall clock on a
       shared machine) and the client's (greenstalk, in this process), printed beside
       the wall time per job;
    2. server-bound: 4 raw connections each pipelining batches of 100 puts, then batches
       of 100 reserves followed by their 100 deletes;
    3. journal bytes per job (puts of 100-byte bodies, after a clean shutdown) and the
       time from exec until a restarted server answers, with `--replay-jobs` live jobs
       (`--million` for 1M);
    4. start-up: time from exec until a TCP connect succeeds (median of `--starts`), the
       figure that matters to test harnesses that start a server and connect at once.

Ends with one line per figure:  RESULT <name>: ours=<v> peer=<v> ratio=<r> target=<t>
(for times the ratio is peer/ours, so higher is better everywhere).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minisys.beanstalk.codec import ReplyParser  # noqa: E402
from minisys.direct import DirectConnection, DirectServer  # noqa: E402
from minisys.poller import ServingLoopPolicy  # noqa: E402
from minisys.server import ServerConfig  # noqa: E402
from minisys.testing import RealServer, free_port  # noqa: E402

CONNECTIONS = 4
BATCH = 100
BODY = b"x" * 100
# The two ceilings' names in RESULT lines (see BareProtocol and BareBufferedProtocol).
BARE_LABELS = {
    "bare": "bare_asyncio",
    "bare-buffered": "bare_asyncio_recv_into",
    "bare-direct": "bare_direct_selector",
    "bare-epoll": "bare_epoll_floor",
}
# Jobs run before the timed part of a latency run (connection set up, caches warm).
WARMUP_JOBS = 300


# A restart replaying a million jobs may take minutes on a shared 2-core machine.
START_TIMEOUT = 600.0


class Server(RealServer):
    """mq, beanstalkd or the bare asyncio ceiling as a subprocess on a free port, started."""

    def __init__(self, kind: str, data_dir: str | None = None, fsync: bool = False) -> None:
        self.kind = kind
        port = free_port()
        cmd: list[str]
        if kind == "mq":
            cmd = [sys.executable, "-m", "mq", "--port", str(port), "--log-level", "warning"]
            if data_dir:
                cmd += ["--data-dir", data_dir, "--fsync", "always" if fsync else "no"]
        elif kind == "beanstalkd":
            cmd = ["beanstalkd", "-l", "127.0.0.1", "-p", str(port)]
            if data_dir:
                cmd += ["-b", data_dir] + (["-f", "0"] if fsync else ["-F"])
        else:  # "bare", "bare-buffered", "bare-direct", "bare-epoll": the ceilings
            cmd = [sys.executable, str(Path(__file__).resolve()), f"--serve-{kind}", str(port)]
        super().__init__(
            cmd, port, timeout=START_TIMEOUT, interval=0.002, stop_timeout=30, cwd=ROOT
        )
        self.started = time.monotonic()
        self.start()
        self.ready_after = time.monotonic() - self.started


def cpu_seconds(pid: int) -> float:
    """CPU time the process has run so far (Linux: exact, from the scheduler)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def latency_bound(server: Server, jobs: int) -> tuple[float, float, float]:
    """(jobs per second, server CPU microseconds per job, client CPU microseconds per job)
    for the greenstalk loop. The client's CPU is this process's (greenstalk runs here);
    what a job's wall time holds beyond the two is time neither process was running:
    the kernel carrying the bytes across and waking the other side."""
    import greenstalk

    with greenstalk.Client(("127.0.0.1", server.port), encoding=None) as client:
        for _ in range(WARMUP_JOBS):
            client.put(BODY)
            client.delete(client.reserve())
        cpu = cpu_seconds(server.pid)
        client_cpu = time.process_time()
        started = time.perf_counter()
        for _ in range(jobs):
            client.put(BODY)
            job = client.reserve()
            client.delete(job)
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        server_cpu = cpu_seconds(server.pid) - cpu
        return jobs / elapsed, server_cpu * 1e6 / jobs, client_cpu * 1e6 / jobs


class BareProtocol(asyncio.Protocol):
    """The ceiling: asyncio's cost for this exchange, with no queue and no real parsing.

    Understands exactly what the greenstalk loop sends (put + body, reserve, delete) and
    answers each packet with one write, as mq does; the job is always the last one put.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""
        self.body_left = 0  # bytes of a put body (+ CRLF) still to come
        self.body = b""
        self.jobs = 0

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out = []
        pos = 0
        while True:
            if self.body_left:
                if len(buf) - pos < self.body_left:
                    break
                self.body = buf[pos : pos + self.body_left - 2]
                pos += self.body_left
                self.body_left = 0
                self.jobs += 1
                out.append(b"INSERTED %d\r\n" % self.jobs)
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = buf[pos:end]
            pos = end + 2
            if line.startswith(b"put "):
                self.body_left = int(line.rsplit(b" ", 1)[1]) + 2
            elif line.startswith(b"reserve"):
                out.append(b"RESERVED %d %d\r\n%b\r\n" % (self.jobs, len(self.body), self.body))
            else:
                out.append(b"DELETED\r\n")
        self.buf = buf[pos:]
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


class BareBufferedProtocol(asyncio.BufferedProtocol, BareProtocol):
    """The same, reading into one reused buffer (recv_into) instead of asyncio's default
    recv(256 KiB), whose allocation costs an mmap/munmap per read (see minisys/reads.py):
    the best asyncio allows."""

    view = memoryview(bytearray(64 * 1024))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.view[:nbytes]))


class BareDirect(DirectConnection):
    """The same exchange on a raw socket served by minisys/direct.py on the loop of
    minisys/poller.py mq runs on (ServingSelector): the ceiling of that loop and
    connection layer, i.e. what mq could reach with a queue and parser that cost nothing
    beyond this canned-reply parsing."""

    def on_connect(self) -> None:
        BareProtocol.connection_made(self, self)  # type: ignore[arg-type]  # writes to self

    on_data = BareProtocol.data_received


def serve_bare_epoll(port: int) -> None:
    """The floor: the least a Python server can do for the greenstalk exchange.

    One epoll loop, one `recv_into` and one `send` per command, the reply chosen by the
    packet's first byte (greenstalk sends each command, a put with its body, in one
    write, so here every read is taken to be exactly one whole command). No asyncio, no
    connection layer, no parser, no limits, no timers: what is left is the interpreter's
    cost of the three system calls per command, under every pure-Python server, mq
    included.
    """
    listener = socket.create_server(("127.0.0.1", port))
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    buffer = bytearray(64 * 1024)
    view = memoryview(buffer)
    jobs, body = 0, b""
    while True:
        for fd, _ in epoll.poll(-1, 42):
            sock = conns.get(fd)
            if sock is None:
                sock, _ = listener.accept()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns[sock.fileno()] = sock
                epoll.register(sock.fileno(), select.EPOLLIN)
                continue
            n = sock.recv_into(buffer)
            if not n:
                epoll.unregister(fd)
                del conns[fd]
                sock.close()
            elif buffer[0] == 112:  # "put <pri> <delay> <ttr> <bytes>\r\n<body>\r\n"
                body = view[buffer.find(b"\r\n") + 2 : n - 2].tobytes()
                jobs += 1
                sock.send(b"INSERTED %d\r\n" % jobs)
            elif buffer[0] == 114:  # "reserve"
                sock.send(b"RESERVED %d %d\r\n%b\r\n" % (jobs, len(body), body))
            else:  # "delete <id>"
                sock.send(b"DELETED\r\n")


def serve_bare(port: int, kind: str) -> None:
    if kind == "bare-epoll":
        serve_bare_epoll(port)
        return

    async def main() -> None:
        if kind == "bare-direct":
            config = ServerConfig(port=port, idle_timeout=0)
            await DirectServer("bare", config, BareDirect).start()
        else:
            loop = asyncio.get_running_loop()
            protocol = BareBufferedProtocol if kind == "bare-buffered" else BareProtocol
            await loop.create_server(protocol, "127.0.0.1", port)
        await asyncio.Event().wait()

    if kind == "bare-direct":
        asyncio.set_event_loop_policy(ServingLoopPolicy())
    asyncio.run(main())


def start_seconds(kind: str) -> float:
    """Seconds from exec until a TCP connect to a fresh server succeeds."""
    port = free_port()
    if kind == "mq":
        cmd = [sys.executable, "-m", "mq", "--port", str(port), "--log-level", "warning"]
    else:
        cmd = ["beanstalkd", "-l", "127.0.0.1", "-p", str(port)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                return time.monotonic() - started
            except ConnectionRefusedError:
                if proc.poll() is not None:
                    raise RuntimeError(f"{kind} exited at start ({proc.returncode})") from None
                time.sleep(0.0005)
    finally:
        proc.terminate()
        proc.wait(30)


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = ReplyParser()

    def batch(self, data: bytes, count: int) -> list:
        self.sock.sendall(data)
        out = []
        while len(out) < count:
            reply = self.parser.next_reply()
            if reply is None:
                self.parser.feed(self.sock.recv(1 << 20))
                continue
            out.append(reply)
        return out


def server_bound(port: int, jobs: int) -> float:
    per_conn = jobs // CONNECTIONS
    put_batch = b"".join(b"put 100 0 60 %d\r\n%b\r\n" % (len(BODY), BODY) for _ in range(BATCH))
    reserve_batch = b"reserve-with-timeout 1\r\n" * BATCH

    def run(conn: Raw) -> None:
        for _ in range(per_conn // BATCH):
            conn.batch(put_batch, BATCH)
        for _ in range(per_conn // BATCH):
            replies = conn.batch(reserve_batch, BATCH)
            ids = [r.args[0] for r in replies if r.word == "RESERVED"]
            conn.batch(b"".join(b"delete %b\r\n" % i for i in ids), len(ids))

    conns = [Raw(port) for _ in range(CONNECTIONS)]
    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (per_conn // BATCH) * BATCH * CONNECTIONS / (time.perf_counter() - started)


def fill(port: int, jobs: int) -> None:
    conn = Raw(port)
    put_batch = b"".join(b"put 100 0 60 %d\r\n%b\r\n" % (len(BODY), BODY) for _ in range(BATCH))
    for _ in range(jobs // BATCH):
        conn.batch(put_batch, BATCH)


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.name != "lock")


def journal_figures(kind: str, jobs: int) -> tuple[float, float]:
    """(journal bytes per job, seconds from exec to answering with `jobs` to replay)."""
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(kind, tmp)
        fill(server.port, jobs)
        server.stop()
        per_job = dir_bytes(tmp) / jobs
        server = Server(kind, tmp)
        conn = Raw(server.port)
        conn.batch(b"stats\r\n", 1)  # answering means the replay is done
        seconds = time.monotonic() - server.started
        server.stop()
        return per_job, seconds


def result(name: str, ours: float, peer: float, target: float, higher_better=True) -> str:
    ratio = ours / peer if higher_better else peer / ours
    return f"RESULT {name}: ours={ours:.4g} peer={peer:.4g} ratio={ratio:.3f} target={target}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per latency run")
    parser.add_argument("--fsync-jobs", type=int, default=1000, help="jobs per fsync run")
    parser.add_argument("--pipeline-jobs", type=int, default=40_000)
    parser.add_argument("--replay-jobs", type=int, default=100_000)
    parser.add_argument("--million", action="store_true", help="replay 1M jobs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--starts", type=int, default=7, help="start-ups timed per server")
    parser.add_argument("--journal-only", action="store_true", help="only figure 3")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-buffered", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-direct", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-epoll", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for kind in BARE_LABELS:
        port = getattr(args, f"serve_{kind.replace('-', '_')}")
        if port is not None:
            serve_bare(port, kind)
            return 0
    if shutil.which("beanstalkd") is None:
        print("beanstalkd is not installed: nothing to compare with", file=sys.stderr)
        return 1
    if args.million:
        args.replay_jobs = 1_000_000
    figures: dict[str, dict[str, list[float]]] = {}

    def record(name: str, kind: str, value: float) -> None:
        kinds = ("mq", "beanstalkd", *BARE_LABELS)
        figures.setdefault(name, {kind: [] for kind in kinds})[kind].append(value)
        print(f"  {name} {kind}: {value:.4g}", flush=True)

    for round_no in range(0 if args.journal_only else args.rounds):
        print(f"round {round_no + 1}/{args.rounds}", flush=True)
        kinds = ("mq", *BARE_LABELS, "beanstalkd")
        for kind in kinds if round_no % 2 == 0 else kinds[::-1]:
            server = Server(kind)
            try:
                rate, cpu, client_cpu = latency_bound(server, args.jobs)
                record("mq_greenstalk_jobs_per_s", kind, rate)
                record("mq_greenstalk_us_per_job", kind, 1e6 / rate)
                record("mq_greenstalk_server_cpu_us_per_job", kind, cpu)
                record("mq_greenstalk_client_cpu_us_per_job", kind, client_cpu)
                if not kind.startswith("bare"):
                    rate = server_bound(server.port, args.pipeline_jobs)
                    record("mq_pipelined_jobs_per_s", kind, rate)
            finally:
                server.stop()
            if kind.startswith("bare"):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                server = Server(kind, tmp, fsync=True)
                try:
                    value, _, _ = latency_bound(server, args.fsync_jobs)
                    record("mq_greenstalk_fsync_jobs_per_s", kind, value)
                finally:
                    server.stop()
    for _ in range(0 if args.journal_only else args.starts):
        for kind in ("mq", "beanstalkd"):
            record("mq_start_ms", kind, start_seconds(kind) * 1000)
    for kind in ("mq", "beanstalkd"):
        per_job, seconds = journal_figures(kind, args.replay_jobs)
        record("mq_journal_bytes_per_job", kind, per_job)
        record(f"mq_replay_{args.replay_jobs}_jobs_s", kind, seconds)

    def med(name: str, kind: str) -> float:
        return statistics.median(figures[name][kind])

    targets = {
        "mq_greenstalk_jobs_per_s": 0.9,
        "mq_greenstalk_fsync_jobs_per_s": 1.0,
        "mq_pipelined_jobs_per_s": 0.4,
    }
    print()
    if not args.journal_only:
        # Where a job's wall time goes: the server's CPU, the client's (greenstalk, here),
        # and the rest, when neither was running (the kernel carrying bytes and waking the
        # other side). Negative rest: some server work overlapped the client's.
        print("a greenstalk job, us (medians):  wall  server-cpu  client-cpu  rest")
        for kind in ("beanstalkd", "mq", *BARE_LABELS):
            wall = med("mq_greenstalk_us_per_job", kind)
            server = med("mq_greenstalk_server_cpu_us_per_job", kind)
            client = med("mq_greenstalk_client_cpu_us_per_job", kind)
            rest = wall - server - client
            print(f"  {kind:<14} {wall:17.1f} {server:11.1f} {client:11.1f} {rest:5.1f}")
        print()
    for name, target in targets.items() if not args.journal_only else ():
        print(result(name, med(name, "mq"), med(name, "beanstalkd"), target))
    if not args.journal_only:
        # The ceiling: asyncio with no queue at all, against beanstalkd and against mq.
        name = "mq_greenstalk_jobs_per_s"
        for kind, label in BARE_LABELS.items():
            bare, peer = med(name, kind), med(name, "beanstalkd")
            print(result(f"mq_greenstalk_{label}_jobs_per_s", bare, peer, "report"))
            print(result(f"mq_greenstalk_vs_{label}_jobs_per_s", med(name, "mq"), bare, "report"))
        name = "mq_greenstalk_server_cpu_us_per_job"
        peer = med(name, "beanstalkd")
        print(result(name, med(name, "mq"), peer, "report", higher_better=False))
        for kind, label in BARE_LABELS.items():
            label = f"mq_greenstalk_{label}_server_cpu_us_per_job"
            print(result(label, med(name, kind), peer, "report", higher_better=False))
        name = "mq_greenstalk_client_cpu_us_per_job"
        peer = med(name, "beanstalkd")
        print(result(name, med(name, "mq"), peer, "report", higher_better=False))
        ours, peer = med("mq_start_ms", "mq"), med("mq_start_ms", "beanstalkd")
        print(result("mq_start_ms", ours, peer, "report", higher_better=False))
    print(
        result(
            "mq_journal_bytes_per_job",
            med("mq_journal_bytes_per_job", "mq"),
            med("mq_journal_bytes_per_job", "beanstalkd"),
            "report",
            higher_better=False,
        )
    )
    name = f"mq_replay_{args.replay_jobs}_jobs_s"
    print(result(name, med(name, "mq"), med(name, "beanstalkd"), "report", higher_better=False))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
