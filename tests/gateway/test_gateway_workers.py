"""`--workers N`: N gateway processes on one port, supervised, stopped cleanly (socket tests)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from minisys.testing import ServerProcess, pid_alive, wait_until


def children(pid: int) -> list[int]:
    """Live child processes of `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def served(admin_port: int) -> int:
    """Requests one worker answered on the public route (from its own /metrics)."""
    url = f"http://127.0.0.1:{admin_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(
        int(float(v))
        for v in re.findall(r'gateway_requests_total\{route="public",[^}]*\} (\S+)', text)
    )


def test_workers_share_one_port_restart_and_stop(stubs, tmp_path, h):
    path = tmp_path / "gateway.toml"
    path.write_text(h.gateway_toml(stubs, h.free_port()))
    args = ("--admin-port", "0", "--workers", "2", "--config", str(path))
    with ServerProcess("gateway", *args, ready=["gateway"]) as proc:
        wait_until(lambda: proc.output_tail().count("READY gateway-admin ") == 2, timeout=15)
        admins = [int(p) for p in re.findall(r"READY gateway-admin \S+:(\d+)", proc.output_tail())]
        workers = children(proc.pid)
        assert len(workers) == 2 and len(set(admins)) == 2
        # Each request on a new connection: the kernel spreads them over both workers.
        for i in range(40):
            assert h.request(proc.port, "GET", f"/public/{i}").status == 200
        counts = [served(port) for port in admins]
        assert sum(counts) == 40 and all(counts), counts

        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: len(children(proc.pid)) == 2 and workers[0] not in children(proc.pid))
        for i in range(10):  # never refused meanwhile: the supervisor keeps every socket
            assert h.request(proc.port, "GET", f"/public/{i}").status == 200

        current = children(proc.pid)
        assert proc.terminate() == 0
        assert not any(pid_alive(pid) for pid in current)


def test_workers_must_be_positive():
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "--workers", "0", "--port", "0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and "--workers must be at least 1" in out.stderr
