"""Fixtures for end-to-end tests: the whole stack, launched as a learner launches it."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest

from minisys.testing import ServerProcess, pid_alive

BENCH_KEY = "minisys-bench-key"
# Starting nine processes on a small shared CI machine can take a while.
STACK_START_TIMEOUT = 120.0


class Stack:
    """A running `python -m minisys up` and the calls tests make through its lb."""

    def __init__(self, proc: ServerProcess, data_dir: Path) -> None:
        self.proc = proc
        self.data_dir = data_dir
        self.lb_port = proc.port

    def state(self) -> dict:
        return json.loads((self.data_dir / "minisys.json").read_text())

    def component(self, name: str) -> dict:
        return next(c for c in self.state()["components"] if c["name"] == name)

    def port(self, name: str) -> int:
        comp = self.component(name)
        return comp["listeners"][comp["kind"]]

    def call(self, method: str, path: str, body=None, key: str = BENCH_KEY, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.lb_port, timeout=30)
        try:
            hdrs = {"Authorization": f"Bearer {key}", **(headers or {})}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            payload = (
                json.loads(raw) if raw and "json" in resp.getheader("content-type", "") else raw
            )
            return resp.status, payload
        finally:
            conn.close()

    def outbox(self) -> str:
        path = self.data_dir / "outbox.mbox"
        return path.read_text(errors="replace") if path.exists() else ""


def start_stack(data_dir: Path) -> Stack:
    proc = ServerProcess(
        "minisys", "up", "--any-ports", "--data-dir", str(data_dir),
        ready=["minisys"], timeout=STACK_START_TIMEOUT, port_flag=False,
        env={"NO_COLOR": "1"},
    )  # fmt: skip
    proc.start()
    return Stack(proc, data_dir)


def _cleanup(stacks: list[Stack], pids: list[int]) -> None:
    for s in stacks:
        if s.proc.alive():
            pids += [c["pid"] for c in s.state()["components"]]
        s.proc.kill()
    for pid in pids:  # never leave a component behind, even when a test fails
        if pid and pid_alive(pid):
            os.kill(pid, 9)


@pytest.fixture
def start_stacks():
    """A factory: `start_stacks(data_dir)` runs a stack; all are killed after the test."""
    stacks: list[Stack] = []
    pids: list[int] = []

    def start(data_dir: Path) -> Stack:
        s = start_stack(data_dir)
        stacks.append(s)
        pids.extend(c["pid"] for c in s.state()["components"])
        return s

    yield start
    _cleanup(stacks, pids)


@pytest.fixture
def stack(tmp_path, start_stacks):
    return start_stacks(tmp_path / "data")
