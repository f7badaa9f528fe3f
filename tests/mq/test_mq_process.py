"""`python -m mq` as a process: signals, start-up, and a restart with its data directory."""

from __future__ import annotations

import signal
import socket

from minisys.beanstalk.codec import ReplyParser, parse_yaml
from minisys.testing import ServerProcess, wait_until


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
