"""The launcher's parts alone: topology, socket hand-over, no orphans, probes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minisys.config import ConfigError
from minisys.launcher import LaunchError, bind_all, bind_listener
from minisys.probes import probe
from minisys.testing import REPO_ROOT, pid_alive, wait_until
from minisys.topology import DEFAULT_PORTS, STAGES, build, from_toml


def test_default_topology_matches_the_design():
    topo = build(Path("/tmp/d"), DEFAULT_PORTS)
    names = [c.name for c in topo.components]
    assert names == [
        "kvcache", "minidb", "mq", "appserver-1", "appserver-2", "worker",
        "gateway-1", "gateway-2", "lb",
    ]  # fmt: skip
    assert topo.port_of("lb") == 8080 and topo.port_of("kvcache") == 6380
    assert [c.kind for c in topo.components] == sorted(
        (c.kind for c in topo.components), key=STAGES.index
    )
    app = topo.by_kind("appserver")[0]
    assert "redis://127.0.0.1:6380" in app.args and "beanstalk://127.0.0.1:11301" in app.args
    lb = topo.by_kind("lb")[0]
    assert lb.args.count("--backend") == 2 and "127.0.0.1:8082" in lb.args
    assert str(Path("/tmp/d/minidb")) in topo.by_kind("minidb")[0].args


def test_toml_overrides_and_errors():
    ports, flags = from_toml(
        {"ports": {"appserver": [1, 2, 3], "lb": 9080}, "flags": {"kvcache": ["--x"]}}
    )
    topo = build(Path("/d"), {**DEFAULT_PORTS, **ports}, flags)
    assert len(topo.by_kind("appserver")) == 3 and topo.port_of("lb") == 9080
    assert topo.by_kind("kvcache")[0].args[-1] == "--x"
    for bad, message in [
        ({"portz": {}}, "portz: unknown table"),
        ({"ports": {"redis": 1}}, "ports.redis: unknown component"),
        ({"ports": {"lb": [1, 2]}}, "ports.lb: exactly one port"),
        ({"ports": {"kvcache": 70000}}, "not a port number"),
        ({"flags": {"lb": "--x"}}, "flags.lb: expected an array of strings"),
    ]:
        with pytest.raises(ConfigError, match=message):
            from_toml(bad)


def test_port_in_use_names_the_component_and_the_fix():
    taken = bind_listener("127.0.0.1", 0, "kvcache")
    port = taken.getsockname()[1]
    try:
        with pytest.raises(LaunchError) as exc:
            bind_all("127.0.0.1", {"lb": [0], "kvcache": [port]})
        assert f"kvcache: cannot listen on 127.0.0.1:{port}" in str(exc.value)
        assert "[ports] kvcache = <port>" in str(exc.value)
        assert "--any-ports" in str(exc.value)
    finally:
        taken.close()


def test_child_adopts_the_sockets_the_launcher_bound():
    sock = bind_listener("127.0.0.1", 0, "lines")
    port = sock.getsockname()[1]
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        MINISYS_FDS=str(sock.fileno()),
        LISTEN_FDNAMES="lines",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "minisys.child", "tests.minisys.lifecycle_server"],
        pass_fds=[sock.fileno()],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().split() == ["READY", "lines", f"127.0.0.1:{port}"]
        assert asyncio.run(probe("tcp", "127.0.0.1", port))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"PING\n")
            assert c.recv(10) == b"PONG\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        sock.close()


def test_children_exit_when_the_launcher_is_killed(tmp_path):
    """kill -9 of the launcher must not leave its children running (no orphans)."""
    pidfile = tmp_path / "child.pid"
    parent_code = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-m", "minisys.child",
                                  "tests.minisys.lifecycle_server"],
                                 stdout=subprocess.PIPE, text=True)
        child.stdout.readline()  # READY
        open({str(pidfile)!r}, "w").write(str(child.pid))
        time.sleep(60)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=env)
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text(), timeout=15)
        child_pid = int(pidfile.read_text())
        assert pid_alive(child_pid)
        parent.kill()
        parent.wait()
        wait_until(lambda: not pid_alive(child_pid), timeout=15, message="child outlived launcher")
    finally:
        parent.kill()
        parent.wait()


def test_probes_answer_false_for_nothing_listening_and_wrong_protocols():
    async def scenario():
        # A port nobody listens on.
        free = bind_listener("127.0.0.1", 0, "x")
        port = free.getsockname()[1]
        free.close()
        assert not await probe("resp", "127.0.0.1", port, timeout=2)

        # A server that answers something else entirely.
        async def wrong(reader, writer):
            await reader.read(100)
            writer.write(b"SSH-2.0-nope\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(wrong, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        assert await probe("tcp", "127.0.0.1", port)
        for kind in ("resp", "beanstalk", "http"):
            assert not await probe(kind, "127.0.0.1", port, timeout=2)
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
