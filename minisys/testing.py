"""Tools for tests: start a real server process, wait for a condition with a deadline.

Tests in minisys run real servers as real processes (that is how the launcher runs them,
and how a learner does). `ServerProcess` starts `python -m <package> --port 0 …`, reads the
`READY <name> <host>:<port>` lines the server prints once it listens, and always cleans up:
the process is killed when the `with` block ends, even when the test fails.

Tests never sleep a fixed time. They poll with a deadline instead, so a fast machine is
fast and a slow, shared CI machine is merely slower, never flaky:

    with ServerProcess("kvcache") as kv:
        ...
        wait_until(lambda: outbox.exists(), timeout=10)

The real products our layers stand in for (redis-server, beanstalkd, nginx, haproxy) run
the same way for differential tests and benches, through `RealServer` and `free_port`:

    with redis_server("--requirepass", "pw") as redis:     # or RealServer(argv, port, …)
        client = RawRespClient(redis.port)

`RawRespClient` and `RawBeanstalkClient` are blocking socket clients that show replies
exactly as parsed (errors included), for byte-level protocol tests.

Simpler than the real thing: trio.testing and pytest-xprocess offer much more; this is the
little we need.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from minisys.testclients import RawBeanstalkClient, RawRespClient

__all__ = [
    "REPO_ROOT", "RawBeanstalkClient", "RawRespClient", "RealServer", "ServerFailed",
    "ServerProcess", "async_wait_until", "beanstalk_ready", "beanstalkd", "can_connect",
    "free_port", "pid_alive", "redis_server", "resp_ready", "wait_until",
]  # fmt: skip

# How many lines of a child's output we keep to show when something goes wrong.
OUTPUT_TAIL_LINES = 200
# Bytes of a real product's output shown when it fails to start.
REAL_OUTPUT_TAIL = 2000
# How long a real product may take to listen on a loaded, shared CI machine.
REAL_START_TIMEOUT = 15.0
# Ports tried when a real product exits at start (another process took its free port).
REAL_START_ATTEMPTS = 3
# How long a stopped real product may take to exit on SIGTERM before it gets SIGKILL.
REAL_STOP_TIMEOUT = 10.0
# One readiness probe's connect/reply limit (the probe is retried until the deadline).
PROBE_TIMEOUT = 1.0

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerFailed(RuntimeError):
    """The server exited or did not print READY in time. The message holds its output."""


class ServerProcess:
    """A server started as `python -m module --port 0 *args`, waited for until READY."""

    def __init__(
        self,
        module: str,
        *args: str,
        ready: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 15.0,
        port_flag: bool = True,
        cwd: str | Path | None = None,
    ) -> None:
        self.module = module
        self.args = [*(["--port", "0"] if port_flag else []), *args]
        self.ready_names = list(ready) if ready else [module]
        self.env = env
        self.timeout = timeout
        self.cwd = cwd
        self.ports: dict[str, int] = {}
        self.hosts: dict[str, str] = {}
        self.proc: subprocess.Popen[str] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
        self._ready_event = threading.Event()
        self._reader: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> ServerProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        if not self._ready_event.wait(self.timeout):
            tail = self.output_tail()
            self.kill()
            raise ServerFailed(
                f"{self.module} did not print READY for {self.ready_names} within "
                f"{self.timeout}s; output:\n{tail}"
            )
        missing = [n for n in self.ready_names if n not in self.ports]
        if missing:
            tail = self.output_tail()
            self.kill()
            raise ServerFailed(f"{self.module} exited before READY {missing}; output:\n{tail}")
        return self

    def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._tail.append(line.rstrip("\n"))
            parts = line.split()
            if len(parts) == 3 and parts[0] == "READY":
                host, _, port = parts[2].rpartition(":")
                self.hosts[parts[1]] = host
                self.ports[parts[1]] = int(port)
                if all(n in self.ports for n in self.ready_names):
                    self._ready_event.set()
        # The process closed its output (it exited): wake anyone waiting for READY.
        self._ready_event.set()

    def __enter__(self) -> ServerProcess:
        # `with proc:` after `proc.start()` must not start a second process.
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    # --- what tests use ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.ports[self.ready_names[0]]

    @property
    def host(self) -> str:
        return self.hosts.get(self.ready_names[0], "127.0.0.1")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output_tail(self) -> str:
        return "\n".join(self._tail)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signum)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait for a clean exit, return the exit code (kills after `timeout`)."""
        assert self.proc is not None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerFailed(
                f"{self.module} ignored SIGTERM for {timeout}s; output:\n{self.output_tail()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL (a crash, as far as the server can tell) and reap the process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "",
) -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], object | Awaitable[object]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "",
) -> object:
    """Like wait_until, without blocking the event loop; `predicate` may be a plain
    function or a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


# --- real products: a free port, readiness probes, a process that never leaks ---------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free at this moment (bound to port 0, read back, released).

    Our servers take `--port 0` and print the port the OS chose, so they never need this.
    The real products cannot: redis-server treats `--port 0` as "no TCP at all", and
    beanstalkd, nginx and haproxy do not report the port they got. So we pick one here
    and pass it. Another process could take it before the product binds it; on a test
    machine that race is rare and shows up as a clear start failure, not a wrong answer.
    Also handy as "a port nothing listens on" (connecting is refused).
    """
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def can_connect(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port (beanstalkd, nginx…)."""
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
        return True
    except OSError:
        return False


def resp_ready(port: int, host: str = "127.0.0.1") -> bool:
    """True when a RESP server answers PING: +PONG, or -NOAUTH behind requirepass; a
    Redis still loading its data answers -LOADING, which is not ready yet."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError:
        return False
    return reply[:1] in (b"+", b"-") and not reply.startswith(b"-LOADING")


class RealServer:
    """A real product started from `argv`, listening on `port`, ready once `ready(port)`.

        port = free_port()
        with RealServer(["beanstalkd", "-l", "127.0.0.1", "-p", str(port)], port) as bs:
            ...  # bs.port, bs.pid, bs.proc

    `argv` may instead be a function of the port, with `port` left out: then the port is
    a `free_port()`, and if the product exits before it is ready (most likely another
    process took the port meanwhile) it is tried again, up to REAL_START_ATTEMPTS times,
    each time on a new port. `argv[0]` is looked up on PATH (`shutil.which`). Output
    (stdout and stderr) goes to a temporary file, never a pipe that could fill and stall
    the product; `output_tail()` shows its end. `start()` raises `ServerFailed` (with
    that output) when the product exits or is not ready within `timeout` (polled every
    `interval`), and kills it first. The with-block always ends with `stop()`: SIGTERM,
    SIGKILL after `stop_timeout`, reaped.
    """

    def __init__(
        self,
        argv: Sequence[str] | Callable[[int], Sequence[str]],
        port: int | None = None,
        *,
        ready: Callable[[int], object] = can_connect,
        timeout: float = REAL_START_TIMEOUT,
        interval: float = 0.01,
        stop_timeout: float = REAL_STOP_TIMEOUT,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if callable(argv):
            self._argv_for: Callable[[int], Sequence[str]] | None = argv
            self.port = port or free_port()
            self.argv = list(argv(self.port))
        else:
            assert port is not None, "RealServer(argv, port): the port argv listens on"
            self._argv_for = None
            self.port = port
            self.argv = list(argv)
        self.ready = ready
        self.timeout = timeout
        self.interval = interval
        self.stop_timeout = stop_timeout
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._died = False  # the last start failed because the product exited by itself
        # Closed by __exit__ (or with the object): outlives start() so the tail can be read.
        self._output = tempfile.TemporaryFile()  # noqa: SIM115

    @property
    def name(self) -> str:
        return os.path.basename(self.argv[0])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> RealServer:
        if self.alive():  # a second process would orphan the first (`with` started it)
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        retries = REAL_START_ATTEMPTS - 1 if self._argv_for is not None else 0
        for _ in range(retries):
            try:
                return self._start_once()
            except ServerFailed:
                if not self._died:
                    raise
            self.port = free_port()
            self.argv = list(self._argv_for(self.port))
        return self._start_once()

    def _start_once(self) -> RealServer:
        binary = shutil.which(self.argv[0])
        if binary is None:
            raise ServerFailed(f"{self.argv[0]} is not installed")
        env = {**os.environ, **self.env} if self.env else None
        self._output.seek(0)
        self._output.truncate()
        self._died = False
        self.proc = subprocess.Popen(
            [binary, *self.argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=env,
        )
        try:
            wait_until(
                lambda: self.proc.poll() is not None or self.ready(self.port),
                timeout=self.timeout,
                interval=self.interval,
            )
        except TimeoutError:
            self.stop()
            raise ServerFailed(
                f"{self.name} not ready on port {self.port} within {self.timeout}s; "
                f"output:\n{self.output_tail()}"
            ) from None
        if self.proc.poll() is not None:
            code = self.proc.returncode
            self._died = True
            self.stop()
            raise ServerFailed(f"{self.name} exited ({code}); output:\n{self.output_tail()}")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output_tail(self) -> str:
        self._output.flush()
        size = self._output.seek(0, os.SEEK_END)
        self._output.seek(max(0, size - REAL_OUTPUT_TAIL))
        return self._output.read().decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL if it lingers, reap; return the exit code (None if never run)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL (a crash, as far as the product can tell) and reap."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> RealServer:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._output.close()


def redis_server(*args: str, port: int | None = None) -> RealServer:
    """A throwaway redis-server on 127.0.0.1 (no RDB, no AOF unless `args` say so: later
    directives win), ready once it answers PING. Not started: use it in a `with`."""

    def argv(port: int) -> list[str]:
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", *args]  # fmt: skip

    return RealServer(argv, port, ready=resp_ready)


def beanstalk_ready(port: int, host: str = "127.0.0.1") -> bool:
    """True when a beanstalkd answers `list-tube-used` (a protocol exchange, so another
    program that happens to listen on the port is not taken for it)."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as s:
            s.sendall(b"list-tube-used\r\n")
            return s.recv(64).startswith(b"USING ")
    except OSError:
        return False


def beanstalkd(*args: str, port: int | None = None) -> RealServer:
    """A throwaway beanstalkd on 127.0.0.1, ready once it answers. Not started."""

    def argv(port: int) -> list[str]:
        return ["beanstalkd", "-l", "127.0.0.1", "-p", str(port), *args]

    return RealServer(argv, port, ready=beanstalk_ready)


NGINX_PREAMBLE = """\
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}
}}
"""


def nginx_server(workdir: str | Path, http: str, port: int, **kwargs: object) -> RealServer:
    """nginx in the foreground with everything (pid, logs, temp files) under `workdir`;
    `http` is the inside of the `http {}` block (upstreams, servers listening on `port`).
    Options: `workers` (1), `connections` (1024) per worker. Not started. Its error log is
    `workdir/error.log`."""
    settings = {"workers": kwargs.pop("workers", 1), "connections": kwargs.pop("connections", 1024)}
    conf = Path(workdir) / "nginx.conf"
    conf.write_text(NGINX_PREAMBLE.format(dir=workdir, http=http, **settings))
    argv = ["nginx", "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]
    return RealServer(argv, port, **kwargs)  # type: ignore[arg-type]
