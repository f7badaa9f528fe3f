"""minisys.server through a real process: port 0, limits, idle timeout, drain, LISTEN_FDS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from minisys.testing import REPO_ROOT, ServerProcess, wait_until

MODULE = "tests.minisys.lifecycle_server"


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(100)
        if not chunk:
            break
        data += chunk
    return data


def test_port_zero_prints_the_bound_port_and_serves():
    with ServerProcess(MODULE, ready=["lines"]) as srv:
        assert srv.port > 0
        assert srv.host == "127.0.0.1"
        with connect(srv.port) as sock:
            sock.sendall(b"PING\n")
            assert read_line(sock) == b"PONG\n"


def test_connection_limit_refuses_politely_and_keeps_serving():
    with ServerProcess(MODULE, "--max-connections", "2", ready=["lines"]) as srv:
        first, second = connect(srv.port), connect(srv.port)
        for sock in (first, second):
            sock.sendall(b"PING\n")
            assert read_line(sock) == b"PONG\n"
        with connect(srv.port) as third:
            assert read_line(third) == b"ERR max connections reached\n"
            assert third.recv(10) == b""  # and then closed
        first.close()

        # Once a slot frees up, new clients are served again.
        def served() -> bool:
            with connect(srv.port) as sock:
                sock.sendall(b"PING\n")
                return read_line(sock) == b"PONG\n"

        wait_until(served, timeout=10)
        second.close()


def test_idle_connections_are_closed_busy_ones_are_not():
    with ServerProcess(MODULE, "--idle-timeout", "0.4", ready=["lines"]) as srv:
        idle = connect(srv.port)
        busy = connect(srv.port)
        busy.sendall(b"SLOW 1500\n")  # busy much longer than the idle timeout
        started = time.monotonic()
        assert idle.recv(10) == b""  # the server hung up on the idle one
        assert time.monotonic() - started < 10
        assert read_line(busy) == b"DONE\n"  # the busy one finished its request
        idle.close()
        busy.close()


def test_sigterm_drains_in_flight_requests_then_exits_zero():
    with ServerProcess(MODULE, ready=["lines"]) as srv:
        busy = connect(srv.port)
        busy.sendall(b"SLOW 500\n")
        idle = connect(srv.port)
        idle.sendall(b"PING\n")
        assert read_line(idle) == b"PONG\n"
        srv.signal(signal.SIGTERM)
        assert idle.recv(10) == b""  # idle connection closed at once
        assert read_line(busy) == b"DONE\n"  # in-flight request finished
        assert srv.proc.wait(15) == 0
        busy.close()
        idle.close()


def test_inherited_listening_socket_is_adopted():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    # A client may connect before the server has even started: it waits in the backlog.
    early = connect(port)
    early.sendall(b"PING\n")
    # minisys.child moves the socket to fd 3 and sets LISTEN_PID to itself, as it does for
    # every component the launcher starts.
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        MINISYS_FDS=str(listener.fileno()),
        LISTEN_FDNAMES="lines",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "minisys.child", "tests.minisys.lifecycle_server"],
        pass_fds=(listener.fileno(),),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        ready = proc.stdout.readline().split()
        assert ready == ["READY", "lines", f"127.0.0.1:{port}"]
        assert read_line(early) == b"PONG\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        early.close()
        listener.close()
