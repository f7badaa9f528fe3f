"""`python -m minisys up`: run the whole stack as separate processes, and look after them.

    bind every port ─▶ start stage by stage ─▶ probe each in its own protocol ─▶ seed demo
    data ─▶ print the banner ─▶ supervise (restart with backoff) ─▶ on Ctrl-C/SIGTERM stop
    stage by stage in reverse, each draining ─▶ exit 0

Why bind first: the launcher holds every listening socket and hands each child its own
(see `child.py`). A client that connects while a child is still starting waits in the
kernel's backlog, and a crashed child restarted on the same socket loses nothing that was
waiting in that backlog.

Why separate processes: kill one gateway (`kill -9`) and watch the lb route around it while
the launcher restarts it. The children live in their own process group, so Ctrl-C reaches
only the launcher, which then stops them in the right order.

The state file `<data-dir>/minisys.json` records what runs where (pids, ports); `status`
and `demo` read it.

Simpler than the real thing: systemd, supervisord or Kubernetes also limit resources,
rotate logs and restart on failed health checks; we restart only on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from minisys.probes import probe
from minisys.server import LISTEN_BACKLOG
from minisys.topology import STAGES, Component, Topology

# How long one component may take to answer its first probe before start-up fails.
READY_TIMEOUT = 30.0
# Restart backoff: 0.5 s, 1 s, 2 s, … capped here; reset after a long enough healthy run.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0
HEALTHY_RUN = 30.0
# A stopping child gets this long after SIGTERM before SIGKILL.
STOP_TIMEOUT = 15.0
# Lines of each child's output kept to explain a failure.
LOG_TAIL = 40

COLORS = ("36", "32", "33", "35", "34", "31", "96", "92", "93", "95")


class LaunchError(RuntimeError):
    """The stack could not start. The message says which component and why."""


@dataclass
class Child:
    comp: Component
    color: str
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    pump: asyncio.Task | None = None


def child_environment() -> dict[str, str]:
    """Our environment, plus what every child needs: unbuffered output, and the checkout on
    the import path (so the layers import even when minisys is not pip-installed)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def bind_listener(host: str, port: int, what: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LaunchError(
            f"{what}: cannot listen on {host}:{port} ({exc.strerror}). Another program "
            f"(perhaps an earlier minisys, or the real product) uses it. Stop it, or move "
            f"{what} with a config file holding `[ports] {what} = <port>` "
            f"(python -m minisys --config minisys.toml), or let the OS pick every port "
            f"(python -m minisys --any-ports)"
        ) from None
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def bind_all(host: str, requested: dict[str, list[int]]) -> dict[str, list[socket.socket]]:
    """Bind every listener up front; port 0 lets the OS choose."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for name, ports in requested.items():
            bound[name] = [bind_listener(host, port, name) for port in ports]
    except LaunchError:
        for socks in bound.values():
            for s in socks:
                s.close()
        raise
    return bound


class Launcher:
    def __init__(
        self,
        topology: Topology,
        sockets: dict[str, list[socket.socket]],
        *,
        out: TextIO = sys.stdout,
        color: bool = False,
    ) -> None:
        self.topology = topology
        self.out = out
        self.color = color
        self.stopping = False
        self.children = [
            Child(comp, COLORS[i % len(COLORS)]) for i, comp in enumerate(topology.components)
        ]
        # Map each component's listener names to the sockets bound for them.
        self.fds: dict[str, list[socket.socket]] = {}
        used = {name: 0 for name in sockets}
        for comp in topology.components:
            mine = []
            for listener in comp.listeners:
                mine.append(sockets[listener][used[listener]])
                used[listener] += 1
            self.fds[comp.name] = mine
        self.width = max(len(c.name) for c in topology.components)
        self._supervisors: list[asyncio.Task] = []

    # --- output -------------------------------------------------------------------------

    def say(self, name: str, line: str, color: str = "0") -> None:
        prefix = f"{name:<{self.width}} |"
        if self.color:
            prefix = f"\x1b[{color}m{prefix}\x1b[0m"
        self.out.write(f"{prefix} {line}\n")
        self.out.flush()

    async def _pump_output(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        async for raw in child.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            child.tail.append(line)
            self.say(child.comp.name, line, child.color)

    # --- starting -----------------------------------------------------------------------

    async def spawn(self, child: Child) -> None:
        comp = child.comp
        socks = self.fds[comp.name]
        env = child_environment()
        env["MINISYS_FDS"] = ",".join(str(s.fileno()) for s in socks)
        env["LISTEN_FDNAMES"] = ":".join(comp.listeners)
        child.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "minisys.child",
            comp.module,
            *comp.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            pass_fds=[s.fileno() for s in socks],
            env=env,
            # Own process group: Ctrl-C in the terminal reaches the launcher only, which
            # then stops the children in reverse dependency order.
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        child.pump = asyncio.create_task(self._pump_output(child))

    async def wait_ready(self, child: Child, timeout: float = READY_TIMEOUT) -> None:
        comp = child.comp
        deadline = time.monotonic() + timeout
        while True:
            assert child.proc is not None
            if child.proc.returncode is not None:
                if child.pump is not None:
                    await child.pump
                raise LaunchError(
                    f"{comp.name} exited with code {child.proc.returncode} while starting; "
                    f"its last lines:\n" + "\n".join(f"    {t}" for t in child.tail)
                )
            if comp.probe == "process" or await probe(
                comp.probe, self.topology.host, comp.port or 0
            ):
                return
            if time.monotonic() > deadline:
                raise LaunchError(
                    f"{comp.name} did not answer its {comp.probe} probe on port {comp.port} "
                    f"within {timeout:.0f}s; its last lines:\n"
                    + "\n".join(f"    {t}" for t in child.tail)
                )
            await asyncio.sleep(0.05)

    async def start(self) -> None:
        """Start stage by stage; each stage's components must be ready before the next."""
        for stage in STAGES:
            stage_children = [c for c in self.children if c.comp.kind == stage]
            for child in stage_children:
                await self.spawn(child)
            await asyncio.gather(*(self.wait_ready(c) for c in stage_children))
        for child in self.children:
            self._supervisors.append(asyncio.create_task(self._supervise(child)))
        self.write_state()

    # --- supervising --------------------------------------------------------------------

    async def _supervise(self, child: Child) -> None:
        backoff = BACKOFF_FIRST
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            if child.pump is not None:
                await child.pump
            if self.stopping:
                return
            if time.monotonic() - child.started_at > HEALTHY_RUN:
                backoff = BACKOFF_FIRST
            self.say("minisys", f"{child.comp.name} exited with code {code}; "
                     f"restarting in {backoff:.1f}s")  # fmt: skip
            await asyncio.sleep(backoff)
            if self.stopping:
                return
            backoff = min(backoff * 2, BACKOFF_MAX)
            child.restarts += 1
            await self.spawn(child)
            self.write_state()

    # --- stopping -----------------------------------------------------------------------

    async def _stop_child(self, child: Child) -> None:
        proc = child.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.say("minisys", f"{child.comp.name} did not stop in {STOP_TIMEOUT:.0f}s: killing")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def stop(self) -> None:
        """Stop in reverse dependency order: lb first, stores last."""
        self.stopping = True
        for stage in reversed(STAGES):
            await asyncio.gather(
                *(self._stop_child(c) for c in self.children if c.comp.kind == stage)
            )
        for task in self._supervisors:
            task.cancel()
        for child in self.children:
            if child.pump is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await child.pump
        for socks in self.fds.values():
            for s in socks:
                s.close()
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    # --- state file ---------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.topology.data_dir / "minisys.json"

    def write_state(self) -> None:
        state = {
            "launcher_pid": os.getpid(),
            "host": self.topology.host,
            "data_dir": str(self.topology.data_dir),
            "components": [
                {
                    "name": c.comp.name,
                    "kind": c.comp.kind,
                    "pid": c.proc.pid if c.proc else None,
                    "listeners": c.comp.listeners,
                    "probe": c.comp.probe,
                    "restarts": c.restarts,
                }
                for c in self.children
            ],
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_path)
