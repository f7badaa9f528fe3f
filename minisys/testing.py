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

Simpler than the real thing: trio.testing and pytest-xprocess offer much more; this is the
little we need.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

# How many lines of a child's output we keep to show when something goes wrong.
OUTPUT_TAIL_LINES = 200

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
    predicate: Callable[[], Awaitable[object]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "",
) -> object:
    """Like wait_until, for a coroutine predicate, without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
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
