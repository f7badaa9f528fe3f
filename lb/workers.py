"""`--workers N`: N lb processes serving one port, the way nginx runs its worker processes.

Place on the journey: the client still meets one lb port; behind it, the kernel hands each
new connection to one of N worker processes, each a complete single-process lb (its own
event loop, pool, health checks and counters: `lb/proxy.py` and friends, unchanged). This
module is the *master*: it binds the port, starts and watches the workers, and serves the
admin endpoint by asking every worker (`lb/fanout.py`). It carries no traffic itself.

    python -m lb --workers 2 …              master: sockets, supervision, admin
        ├─ python -m minisys.child lb …     worker 0 (socket 0, private admin port)
        └─ python -m minisys.child lb …     worker 1 (socket 1, private admin port)

Why processes: one Python process runs on one core (the GIL), and HAProxy uses every core
with threads. Measured on the 2-core bench machine (bench/lb.py), two workers gave
+20–40 % keep-alive req/s over one when the machine was otherwise quiet, for the same CPU
per request.

Sockets: the master binds one listening socket per worker on the same port with
SO_REUSEPORT, and the kernel spreads new connections over them by a hash of the addresses
(nginx's `listen … reuseport`). One shared socket that every worker accepts from is
simpler, but in one of two runs here it split the work 72 % / 28 % (asyncio accepts
in bursts). The master keeps its copies, so connections that arrive while a
worker is being replaced wait in that socket's backlog instead of being refused. When the
launcher passed the port in (`LISTEN_FDS`), that one socket is shared by all workers.

State is per worker, like nginx upstreams without a shared `zone`: each worker checks
every backend (N × the check traffic), keeps its own counters, queue and limits, so
`--max-connections`, `maxconn` and `--queue-size` apply per worker (N × in total).
Admin changes go to every worker, and the master remembers them so that a replacement
worker is brought to the same state.

    event                               the master
    a worker exits on its own           starts a replacement on the same socket, replays
                                        the admin changes (a warning in the log)
    MAX_RESTARTS exits in RESTART_WINDOW stops every worker and exits 1, loudly
    SIGTERM / SIGINT                    closes its socket copies, SIGTERMs every worker
                                        (each drains, up to --drain-timeout), waits, exits 0
    the master is killed (kill -9)      the kernel SIGTERMs the workers (PR_SET_PDEATHSIG,
                                        set by minisys/child.py) and they drain and exit

Simpler than the real thing: nginx reloads its configuration by starting new workers and
retiring old ones, and shares upstream state between workers in shared memory (`zone`);
HAProxy shares everything between threads. Our workers share nothing but the port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from minisys.logs import get_logger
from minisys.server import (
    Server,
    ServerConfig,
    inherited_socket,
    reuseport_sockets,
    serve,
    wait_for_stop_signal,
)
from minisys.serverconfig import admin_config

log = get_logger("lb.workers")

# More worker processes than this would only contend for the cores (and each one runs
# every health check); a typo like `--workers 400` is refused.
MAX_WORKERS = 64
# How long a worker may take to import and print its READY lines.
WORKER_READY_TIMEOUT = 15.0
# A worker that keeps dying is a bug, not bad luck: after this many exits within the
# window the master gives up and exits with an error instead of restarting forever.
MAX_RESTARTS = 5
RESTART_WINDOW = 30.0
# After SIGTERM a worker drains for up to --drain-timeout; this much more, then SIGKILL.
STOP_GRACE = 5.0
# A worker's stdout line longer than this is cut (asyncio's StreamReader limit).
MAX_LINE = 64 * 1024


# Set in each worker's environment to its index, so that its log lines say "lb-worker-1".
WORKER_ENV = "LB_WORKER"


class WorkerFailed(RuntimeError):
    """A worker could not start; the message says why."""


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on host:port: SO_REUSEPORT siblings, or the inherited one."""
    inherited = inherited_socket("lb")
    if inherited is not None:
        return [inherited] * count
    return reuseport_sockets(host, port, count)


@dataclass(eq=False)
class Worker:
    index: int
    sock: socket.socket
    proc: asyncio.subprocess.Process | None = None
    admin_port: int = 0
    ready: bool = False  # the admin asks it: started and, if a replacement, up to date


class Supervisor:
    """Starts the workers, replaces the ones that die, stops them all on shutdown."""

    def __init__(self, argv: list[str], sockets: list[socket.socket], drain_timeout: float) -> None:
        self.argv = argv
        self.workers = [Worker(i, sock) for i, sock in enumerate(sockets)]
        self.drain_timeout = drain_timeout
        self.stopping = False
        self.failure: str | None = None
        self.restarts = 0
        self.recent_exits: deque[float] = deque(maxlen=MAX_RESTARTS + 1)
        self.crash_loop = asyncio.Event()
        # Called with a freshly replaced worker (the admin replays its changes to it).
        self.on_replaced: Callable[[Worker], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Task] = set()

    def ready_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.ready]

    async def start(self) -> None:
        """Start every worker and wait for all of them to be READY."""
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        for worker in self.workers:
            worker.ready = True
        for worker in self.workers:
            self._keep(self._watch(worker))

    def _keep(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn(self, worker: Worker) -> None:
        env = dict(os.environ)
        for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(key, None)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env[WORKER_ENV] = str(worker.index)
        # minisys/child.py moves the socket to fd 3, sets LISTEN_FDS, and ties the
        # worker's life to ours.
        env["MINISYS_FDS"] = str(worker.sock.fileno())
        env["LISTEN_FDNAMES"] = "lb"
        worker.ready = False
        worker.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "minisys.child", "lb", *self.argv,
            env=env, pass_fds=(worker.sock.fileno(),),
            # Its own process group: a Ctrl-C in the terminal reaches only the master, which
            # then stops the workers once, in order (a second signal would skip their drain).
            # Not its own session: with the kernel's autogroup scheduling, each session is
            # scheduled as one group, and a worker in a group of its own preempted whatever
            # ran (wrk, nginx, …) on every wake-up (see "Several processes" in README.md).
            process_group=0,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=MAX_LINE,
        )  # fmt: skip
        self._keep(self._pump(worker.proc.stderr, sys.stderr))
        try:
            async with asyncio.timeout(WORKER_READY_TIMEOUT):
                await self._read_ready(worker)
        except TimeoutError:
            worker.proc.kill()
            raise WorkerFailed(
                f"worker {worker.index} not READY after {WORKER_READY_TIMEOUT}s"
            ) from None
        self._keep(self._pump(worker.proc.stdout, sys.stdout))
        log.info("worker %d ready (pid %d)", worker.index, worker.proc.pid)

    async def _read_ready(self, worker: Worker) -> None:
        seen = set()
        while seen != {"lb", "lb-admin"}:
            line = await worker.proc.stdout.readline()
            if not line:
                code = await worker.proc.wait()
                raise WorkerFailed(f"worker {worker.index} exited with code {code} at start")
            parts = line.decode(errors="replace").split()
            if len(parts) == 3 and parts[0] == "READY":
                seen.add(parts[1])
                if parts[1] == "lb-admin":
                    worker.admin_port = int(parts[2].rpartition(":")[2])

    async def _pump(self, stream: asyncio.StreamReader, out) -> None:
        # Workers print through us, a whole line per write: lines from several processes
        # sharing one pipe could otherwise interleave mid-line (our READY line included).
        # Reading also keeps the worker's pipe from filling up and blocking it.
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than MAX_LINE: asyncio dropped it
                out.write("[lb worker: an overlong output line was dropped]\n")
                continue
            if not line:
                return
            out.write(line.decode(errors="replace"))
            out.flush()

    async def _watch(self, worker: Worker) -> None:
        while True:
            code = await worker.proc.wait()
            worker.ready = False
            if self.stopping:
                return
            now = time.monotonic()
            self.recent_exits.append(now)
            pid = worker.proc.pid
            log.warning("worker %d (pid %d) exited with code %s", worker.index, pid, code)
            recent = [t for t in self.recent_exits if now - t <= RESTART_WINDOW]
            if len(recent) > MAX_RESTARTS:
                self._give_up(f"workers exited {len(recent)} times within {RESTART_WINDOW:g}s")
                return
            try:
                await self._spawn(worker)
            except WorkerFailed as exc:
                log.warning("%s", exc)
                continue  # counted as another exit on the next round
            self.restarts += 1
            log.warning("worker %d replaced (pid %d)", worker.index, worker.proc.pid)
            if self.on_replaced is not None:
                await self.on_replaced(worker)
            worker.ready = True  # only now does the admin endpoint count it

    def _give_up(self, reason: str) -> None:
        self.failure = reason
        log.error("%s: giving up, stopping the lb", reason)
        self.crash_loop.set()

    async def stop(self) -> None:
        """Close our socket copies, SIGTERM every worker, wait for them (SIGKILL late ones)."""
        self.stopping = True
        for sock in {id(w.sock): w.sock for w in self.workers}.values():
            sock.close()
        procs = [w.proc for w in self.workers if w.proc is not None]
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(self.drain_timeout + STOP_GRACE):
                await asyncio.gather(*(proc.wait() for proc in procs))
        except TimeoutError:
            for proc in procs:
                if proc.returncode is None:
                    log.warning("worker pid %d ignored SIGTERM: killing it", proc.pid)
                    proc.kill()
            await asyncio.gather(*(proc.wait() for proc in procs))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def worker_argv(argv: list[str]) -> list[str]:
    """The master's own arguments, overridden for a worker (argparse keeps the last one)."""
    return [*argv, "--workers", "1", "--port", "0", "--admin-port", "0"]


async def run_master(args: argparse.Namespace, argv: list[str], config: ServerConfig) -> int:
    """Bind, start the workers, serve the admin endpoint, supervise until told to stop."""
    from lb.fanout import fanout_admin_server  # the HTTP stack, only for a master

    sockets = listening_sockets(config.host, config.port, args.workers)
    supervisor = Supervisor(worker_argv(argv), sockets, config.drain_timeout)
    stop = wait_for_stop_signal()
    try:
        await supervisor.start()
    except WorkerFailed as exc:
        print(f"lb: {exc}", file=sys.stderr, flush=True)
        await supervisor.stop()
        return 1
    servers: list[Server] = []
    if args.admin_port >= 0:
        admin = admin_config(config, args.admin_port)
        servers.append(fanout_admin_server(admin, supervisor))
    host, port = sockets[0].getsockname()[:2]
    sys.stdout.write(f"READY lb {host}:{port}\n")  # one write: see _pump
    sys.stdout.flush()
    log.info("lb listening on %s:%s with %d workers", host, port, len(sockets))

    async def crash_loop() -> None:
        await supervisor.crash_loop.wait()
        stop.set()

    watcher = asyncio.create_task(crash_loop())
    await serve(*servers, stop=stop, on_stop=supervisor.stop)
    watcher.cancel()
    return 1 if supervisor.failure else 0
