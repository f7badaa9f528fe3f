"""Benchmark mq against beanstalkd, alternating in one run.

    python bench/mq.py [--jobs 3000] [--pipeline-jobs 40000] [--replay-jobs 100000]
                       [--million] [--rounds 2] [--journal-only]

Figures (each measured for mq and for beanstalkd, alternating within every round, medians
over the rounds):

    1. latency-bound: greenstalk, one client, put -> reserve -> delete per job (what an app
       sees), in memory and with an fsync per change (mq --fsync always, beanstalkd -f 0
       with -b);
    2. server-bound: 4 raw connections each pipelining batches of 100 puts, then batches
       of 100 reserves followed by their 100 deletes;
    3. journal bytes per job (puts of 100-byte bodies, after a clean shutdown) and the
       time from exec until a restarted server answers, with `--replay-jobs` live jobs
       (`--million` for 1M).

Ends with one line per figure:  RESULT <name>: ours=<v> peer=<v> ratio=<r> target=<t>
(for times the ratio is peer/ours, so higher is better everywhere).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minisys.beanstalk.codec import ReplyParser  # noqa: E402
from minisys.testing import RealServer, free_port  # noqa: E402

CONNECTIONS = 4
BATCH = 100
BODY = b"x" * 100


# A restart replaying a million jobs may take minutes on a shared 2-core machine.
START_TIMEOUT = 600.0


class Server(RealServer):
    """mq or beanstalkd as a subprocess on a free port, started; `started` is when."""

    def __init__(self, kind: str, data_dir: str | None = None, fsync: bool = False) -> None:
        self.kind = kind
        port = free_port()
        if kind == "mq":
            cmd = [sys.executable, "-m", "mq", "--port", str(port), "--log-level", "warning"]
            if data_dir:
                cmd += ["--data-dir", data_dir, "--fsync", "always" if fsync else "no"]
        else:
            cmd = ["beanstalkd", "-l", "127.0.0.1", "-p", str(port)]
            if data_dir:
                cmd += ["-b", data_dir] + (["-f", "0"] if fsync else ["-F"])
        super().__init__(
            cmd, port, timeout=START_TIMEOUT, interval=0.002, stop_timeout=30, cwd=ROOT
        )
        self.started = time.monotonic()
        self.start()
        self.ready_after = time.monotonic() - self.started


def latency_bound(port: int, jobs: int) -> float:
    import greenstalk

    with greenstalk.Client(("127.0.0.1", port), encoding=None) as client:
        started = time.perf_counter()
        for _ in range(jobs):
            client.put(BODY)
            job = client.reserve()
            client.delete(job)
        return jobs / (time.perf_counter() - started)


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
    parser.add_argument("--journal-only", action="store_true", help="only figure 3")
    args = parser.parse_args()
    if shutil.which("beanstalkd") is None:
        print("beanstalkd is not installed: nothing to compare with", file=sys.stderr)
        return 1
    if args.million:
        args.replay_jobs = 1_000_000
    figures: dict[str, dict[str, list[float]]] = {}

    def record(name: str, kind: str, value: float) -> None:
        figures.setdefault(name, {"mq": [], "beanstalkd": []})[kind].append(value)
        print(f"  {name} {kind}: {value:.4g}", flush=True)

    for round_no in range(0 if args.journal_only else args.rounds):
        print(f"round {round_no + 1}/{args.rounds}", flush=True)
        for kind in ("mq", "beanstalkd") if round_no % 2 == 0 else ("beanstalkd", "mq"):
            server = Server(kind)
            try:
                record("mq_greenstalk_jobs_per_s", kind, latency_bound(server.port, args.jobs))
                record(
                    "mq_pipelined_jobs_per_s", kind, server_bound(server.port, args.pipeline_jobs)
                )
            finally:
                server.stop()
            with tempfile.TemporaryDirectory() as tmp:
                server = Server(kind, tmp, fsync=True)
                try:
                    value = latency_bound(server.port, args.fsync_jobs)
                    record("mq_greenstalk_fsync_jobs_per_s", kind, value)
                finally:
                    server.stop()
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
    for name, target in targets.items() if not args.journal_only else ():
        print(result(name, med(name, "mq"), med(name, "beanstalkd"), target))
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
