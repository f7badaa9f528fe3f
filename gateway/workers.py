"""`python -m gateway --workers N`: N gateway processes sharing one port, like nginx workers.

On the request's journey this sits before everything else: one process binds the gateway's
port N times with `SO_REUSEPORT`, starts N ordinary gateway processes (each gets one of the
sockets as an inherited descriptor, the systemd convention minisys.server already reads),
and then only supervises. The kernel spreads new connections over the N listening sockets
by a hash of the address pair, so each worker serves about 1/N of the clients on its own
event loop and core; a connection stays with one worker for its whole life.

    supervisor ──fork/exec──▶ worker 0  socket #0 (port P)   admin port A
               ──fork/exec──▶ worker 1  socket #1 (port P)   admin port A+1 (0 → any)
               …            SIGTERM/SIGINT/SIGHUP are passed on; a worker that dies is
                            started again after WORKER_RESTART_DELAY_S on the same socket

Why one socket per worker and not one shared socket: asyncio accepts every pending
connection on each wake-up, so with a shared socket the first worker to wake takes a whole
burst of clients and the others idle. With SO_REUSEPORT the kernel balances instead.
The supervisor keeps its copy of every socket, so while a worker restarts, connections
hashed to its socket wait in the kernel's backlog instead of being refused.

What is per process: everything in memory. `local` rate-limit buckets are per worker, so
a consumer may get up to N × its local quota (each worker refills its own bucket); use the
`shared` policy where one exact limit matters — it lives in kvcache and is exact across
workers, exactly as across the two gateways the launcher runs. Breakers, health state,
metrics and the admin API are per worker too (each worker has its own admin port).

Simpler than the real thing: nginx's master also reloads workers gracefully on SIGHUP and
upgrades its binary in place; here SIGHUP makes each worker reload its config file itself,
and there is no binary upgrade.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from minisys.logs import get_logger
from minisys.server import reuseport_sockets

log = get_logger("gateway")

# A worker that exits by itself is started again after this pause (a crash loop must not
# spin the CPU); one second is the launcher's first restart back-off too.
WORKER_RESTART_DELAY_S = 1.0
# How long stopping workers get after SIGTERM before SIGKILL: their own drain (10 s by
# default) plus a margin.
STOP_GRACE_S = 15.0


def worker_argv(argv: list[str], admin_port: int, index: int) -> list[str]:
    """The command line of worker `index`: ours without --workers, its own admin port."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--admin-port"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--admin-port=")):
            continue
        out.append(arg)
    port = admin_port + index if admin_port else 0
    return [sys.executable, "-m", "minisys.child", "gateway", *out, "--admin-port", str(port)]


def supervise(argv: list[str], host: str, port: int, admin_port: int, workers: int) -> int:
    """Run `workers` gateway processes on one port until SIGTERM/SIGINT; return exit code."""
    socks = reuseport_sockets(host, port, workers)
    stopping = False
    procs: list[subprocess.Popen | None] = [None] * workers

    def start(index: int) -> subprocess.Popen:
        fd = socks[index].fileno()
        env = {**os.environ, "MINISYS_FDS": str(fd), "LISTEN_FDNAMES": "gateway"}
        for name in ("LISTEN_FDS", "LISTEN_PID"):  # ours (if any) are not the worker's
            env.pop(name, None)
        return subprocess.Popen(worker_argv(argv, admin_port, index), env=env, pass_fds=(fd,))

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP:
            stopping = True
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    for i in range(workers):
        procs[i] = start(i)
    log.info("gateway: %d workers on %s:%d", workers, host, socks[0].getsockname()[1])
    while not stopping:
        time.sleep(0.2)
        for i, proc in enumerate(procs):
            code = proc.poll() if proc is not None else None
            if code is not None and not stopping:
                log.warning("gateway worker %d exited with %s; restarting", i, code)
                time.sleep(WORKER_RESTART_DELAY_S)
                if not stopping:
                    procs[i] = start(i)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        if proc is None:
            continue
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for sock in socks:
        sock.close()
    return 0
