"""`python -m mq` as a process: signals, start-up (early listen, inherited socket), restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from minisys.beanstalk.codec import ReplyParser, parse_yaml
from minisys.testing import REPO_ROOT, ServerProcess, can_connect, free_port, wait_until
from mq.job import READY, Job
from mq.journal import JOURNAL
from mq.records import encode_meta, encode_put


def call(sock: socket.socket, parser: ReplyParser, data: bytes):
    sock.sendall(data)
    while (reply := parser.next_reply()) is None:
        parser.feed(sock.recv(65536))
    return reply


def test_sigusr1_drains_and_sigterm_exits_cleanly():
    with ServerProcess("mq") as mq:
        sock = socket.create_connection(("127.0.0.1", mq.port), timeout=10)
        parser = ReplyParser()
        assert call(sock, parser, b"put 1 0 1 1\r\na\r\n").word == "INSERTED"
        mq.signal(signal.SIGUSR1)
        wait_until(lambda: parse_yaml(call(sock, parser, b"stats\r\n").body)["draining"] == "true")
        assert call(sock, parser, b"put 1 0 1 1\r\nb\r\n").word == "DRAINING"
        # Other commands still work in drain mode.
        assert call(sock, parser, b"reserve-with-timeout 0\r\n").word == "RESERVED"
        assert mq.terminate() == 0


def test_restart_keeps_jobs_and_counters(tmp_path):
    data = str(tmp_path / "mq")
    with ServerProcess("mq", "--data-dir", data) as mq:
        sock = socket.create_connection(("127.0.0.1", mq.port), timeout=10)
        parser = ReplyParser()
        for body in (b"a", b"b", b"c"):
            call(sock, parser, b"put 5 0 60 1\r\n%b\r\n" % body)
        call(sock, parser, b"reserve\r\n")
        assert call(sock, parser, b"bury 1 9\r\n").word == "BURIED"
        call(sock, parser, b"reserve\r\n")  # job 2 stays reserved
        assert mq.terminate() == 0
    with ServerProcess("mq", "--data-dir", data) as mq:
        sock = socket.create_connection(("127.0.0.1", mq.port), timeout=10)
        parser = ReplyParser()
        one = parse_yaml(call(sock, parser, b"stats-job 1\r\n").body)
        assert (one["state"], one["pri"], one["buries"], one["reserves"]) == (
            "buried", "9", "1", "1",
        )  # fmt: skip
        two = parse_yaml(call(sock, parser, b"stats-job 2\r\n").body)
        assert (two["state"], two["reserves"]) == ("ready", "1")
        assert call(sock, parser, b"put 1 0 1 1\r\nd\r\n").args == (b"4",)


def test_a_client_connecting_during_start_up_sees_the_whole_journal(tmp_path):
    """mq listens before it replays (as beanstalkd): an early client waits in the backlog
    and is served only once the replay is over, never from a half-loaded queue."""
    jobs = 20_000
    data = tmp_path / "mq"
    data.mkdir()
    records = [encode_meta(1, 1)]
    for i in range(1, jobs + 1):
        job = Job(i, "default", 1, 0, 60, b"x" * 10, 0.0)
        job.state = READY
        records.append(encode_put(job))
    (data / JOURNAL).write_bytes(b"".join(records))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mq", "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        wait_until(lambda: can_connect(port), timeout=15, interval=0.001)
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        stats = parse_yaml(call(sock, ReplyParser(), b"stats-tube default\r\n").body)
        assert stats["current-jobs-ready"] == str(jobs)
        sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_inherited_listening_socket_is_served():
    """The launcher's way (LISTEN_FDS, fd 3, named "mq"): mq adopts the socket it is given."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    early = socket.create_connection(("127.0.0.1", port), timeout=10)  # waits in the backlog
    # minisys.child moves the socket to fd 3 and sets LISTEN_PID, as for the launcher.
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        MINISYS_FDS=str(listener.fileno()),
        LISTEN_FDNAMES="mq",
    )
    proc = subprocess.Popen(
        # the port flag loses to the inherited socket
        [sys.executable, "-m", "minisys.child", "mq", "--port", "1"],
        pass_fds=(listener.fileno(),),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        assert proc.stdout.readline().split() == ["READY", "mq", f"127.0.0.1:{port}"]
        assert call(early, ReplyParser(), b"put 1 0 1 1\r\na\r\n").word == "INSERTED"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        early.close()
        listener.close()
