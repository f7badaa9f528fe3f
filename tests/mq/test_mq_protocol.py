"""beanstalkd's protocol through a socket: every command and every error word.

Each test runs against mq and (when installed) the real beanstalkd, with the exact bytes
beanstalkd 1.12 sends. A failure only on "beanstalkd" means the test encodes a wrong
guess about beanstalkd; a failure only on "mq" is a bug in mq.
"""

from __future__ import annotations

import socket

import pytest

from minisys.beanstalk.codec import parse_yaml
from minisys.testing import wait_until


def put(c, body: bytes = b"hello", pri: int = 100, delay: int = 0, ttr: int = 60) -> int:
    line = c.call(b"put %d %d %d %d\r\n%b\r\n" % (pri, delay, ttr, len(body), body))
    assert line.startswith(b"INSERTED "), line
    return int(line.split()[1])


def yaml(c, request: bytes) -> dict:
    line = c.call(request)
    assert line.startswith(b"OK "), line
    return parse_yaml(line.split(b"\r\n", 1)[1][:-2])


def test_put_reserve_delete(client):
    job = put(client, b"hello")
    assert client.call(b"reserve\r\n") == b"RESERVED %d 5\r\nhello\r\n" % job
    assert client.call(b"delete %d\r\n" % job) == b"DELETED\r\n"
    assert client.call(b"delete %d\r\n" % job) == b"NOT_FOUND\r\n"


def test_empty_and_binary_bodies(client):
    body = bytes(range(256)) + b"\r\n\r\n"
    a = put(client, b"")
    b = put(client, body)
    assert client.call(b"peek %d\r\n" % a) == b"FOUND %d 0\r\n\r\n" % a
    assert client.call(b"peek %d\r\n" % b) == b"FOUND %d %d\r\n%b\r\n" % (b, len(body), body)


def test_priority_then_fifo(client):
    low = put(client, b"low", pri=10)
    urgent1 = put(client, b"u1", pri=1)
    urgent2 = put(client, b"u2", pri=1)
    order = []
    for _ in range(3):
        order.append(int(client.call(b"reserve-with-timeout 0\r\n").split()[1]))
    assert order == [urgent1, urgent2, low]


def test_use_watch_ignore_and_lists(client):
    assert client.call(b"use jobs\r\n") == b"USING jobs\r\n"
    assert client.call(b"list-tube-used\r\n") == b"USING jobs\r\n"
    assert client.call(b"watch jobs\r\n") == b"WATCHING 2\r\n"
    assert client.call(b"watch jobs\r\n") == b"WATCHING 2\r\n"
    assert client.call(b"ignore nothere\r\n") == b"WATCHING 2\r\n"
    assert client.call(b"ignore default\r\n") == b"WATCHING 1\r\n"
    assert client.call(b"ignore jobs\r\n") == b"NOT_IGNORED\r\n"
    assert client.call(b"list-tubes-watched\r\n") == b"OK 11\r\n---\n- jobs\n\r\n"
    assert sorted(yaml(client, b"list-tubes\r\n")) == ["default", "jobs"]


def test_tube_names(client):
    name = b"A-z0+/;.$_()" + b"x" * 188
    assert len(name) == 200
    assert client.call(b"use " + name + b"\r\n") == b"USING " + name + b"\r\n"
    for bad in (name + b"x", b"-abc", b"a b", b"a*b", b"", b" foo", b"foo "):
        assert client.call(b"use " + bad + b"\r\n") == b"BAD_FORMAT\r\n", bad


def test_tube_dropped_when_unused_and_empty(server):
    a, b = server.client(), server.client()
    a.call(b"use temp\r\n")
    assert "temp" in yaml(b, b"list-tubes\r\n")
    a.call(b"use default\r\n")
    assert "temp" not in yaml(b, b"list-tubes\r\n")
    assert b.call(b"stats-tube temp\r\n") == b"NOT_FOUND\r\n"
    a.close()
    b.close()


def test_delayed_job_and_peeks(client):
    job = put(client, b"later", delay=100)
    assert client.call(b"peek-delayed\r\n") == b"FOUND %d 5\r\nlater\r\n" % job
    assert client.call(b"peek-ready\r\n") == b"NOT_FOUND\r\n"
    assert client.call(b"peek-buried\r\n") == b"NOT_FOUND\r\n"
    assert client.call(b"reserve-with-timeout 0\r\n") == b"TIMED_OUT\r\n"
    stats = yaml(client, b"stats-job %d\r\n" % job)
    assert stats["state"] == "delayed" and stats["delay"] == "100"
    assert 98 <= int(stats["time-left"]) <= 100
    assert client.call(b"kick 10\r\n") == b"KICKED 1\r\n"
    assert yaml(client, b"stats-job %d\r\n" % job)["kicks"] == "1"
    assert client.call(b"peek-ready\r\n") == b"FOUND %d 5\r\nlater\r\n" % job


def test_release_bury_kick(client):
    job = put(client, b"work")
    client.call(b"reserve\r\n")
    assert client.call(b"release %d 5 0\r\n" % job) == b"RELEASED\r\n"
    assert client.call(b"release %d 5 0\r\n" % job) == b"NOT_FOUND\r\n"
    client.call(b"reserve\r\n")
    assert client.call(b"bury %d 7\r\n" % job) == b"BURIED\r\n"
    assert client.call(b"bury %d 7\r\n" % job) == b"NOT_FOUND\r\n"
    assert client.call(b"peek-buried\r\n") == b"FOUND %d 4\r\nwork\r\n" % job
    stats = yaml(client, b"stats-job %d\r\n" % job)
    assert (stats["state"], stats["pri"], stats["releases"], stats["buries"]) == (
        "buried", "7", "1", "1",
    )  # fmt: skip
    delayed = put(client, b"d", delay=100)
    # kick takes buried jobs first and only them while any is buried.
    assert client.call(b"kick 5\r\n") == b"KICKED 1\r\n"
    assert client.call(b"kick 5\r\n") == b"KICKED 1\r\n"
    assert client.call(b"kick 5\r\n") == b"KICKED 0\r\n"
    assert yaml(client, b"stats-job %d\r\n" % delayed)["state"] == "ready"


def test_kick_job_and_reserve_job(client):
    job = put(client, b"x", delay=100)
    assert client.call(b"kick-job %d\r\n" % job) == b"KICKED\r\n"
    assert client.call(b"kick-job %d\r\n" % job) == b"NOT_FOUND\r\n"
    assert client.call(b"reserve-job %d\r\n" % job) == b"RESERVED %d 1\r\nx\r\n" % job
    assert client.call(b"reserve-job %d\r\n" % job) == b"NOT_FOUND\r\n"
    assert client.call(b"reserve-job 99999\r\n") == b"NOT_FOUND\r\n"
    assert client.call(b"kick-job 99999\r\n") == b"NOT_FOUND\r\n"


def test_only_the_reserver_may_release_bury_touch_delete(server):
    a, b = server.client(), server.client()
    job = put(a)
    a.call(b"reserve\r\n")
    for cmd in (b"release %d 1 0", b"bury %d 1", b"touch %d", b"delete %d"):
        assert b.call(cmd % job + b"\r\n") == b"NOT_FOUND\r\n"
    assert a.call(b"touch %d\r\n" % job) == b"TOUCHED\r\n"
    a.close()  # closing returns the reservation: now b can reserve it
    assert b.call(b"reserve-with-timeout 5\r\n").startswith(b"RESERVED %d " % job)
    b.close()


def test_ttr_expiry_and_deadline_soon(client):
    job = put(client, b"slow", ttr=1)
    client.call(b"reserve\r\n")
    # With TTR 1 the job is inside its last-second safety margin at once.
    assert client.call(b"reserve-with-timeout 0\r\n") == b"DEADLINE_SOON\r\n"
    assert client.call(b"reserve\r\n") == b"DEADLINE_SOON\r\n"
    # After the TTR runs out the job is ready again and counted as a timeout.
    wait_until(lambda: yaml(client, b"stats-job %d\r\n" % job)["state"] == "ready", timeout=5)
    stats = yaml(client, b"stats-job %d\r\n" % job)
    assert stats["timeouts"] == "1" and stats["reserves"] == "1"
    assert int(yaml(client, b"stats\r\n")["job-timeouts"]) == 1


def test_ttr_zero_becomes_one(client):
    job = put(client, ttr=0)
    assert yaml(client, b"stats-job %d\r\n" % job)["ttr"] == "1"


def test_waiting_reserve_served_in_arrival_order(server):
    first, second, producer = server.client(), server.client(), server.client()
    first.send(b"reserve\r\n")
    assert first.nothing_pending()
    second.send(b"reserve\r\n")
    assert second.nothing_pending()
    wait_until(lambda: yaml(producer, b"stats\r\n")["current-waiting"] == "2", timeout=5)
    one = put(producer, b"one")
    assert first.raw_line() == b"RESERVED %d 3\r\none\r\n" % one
    two = put(producer, b"two")
    assert second.raw_line() == b"RESERVED %d 3\r\ntwo\r\n" % two
    for c in (first, second, producer):
        c.close()


def test_reserve_with_timeout_times_out(client):
    assert client.call(b"reserve-with-timeout 1\r\n") == b"TIMED_OUT\r\n"


def test_waiting_reserve_on_half_closed_socket_times_out(client):
    client.send(b"reserve\r\n")
    assert client.nothing_pending()
    client.sock.shutdown(socket.SHUT_WR)
    assert client.raw_line() == b"TIMED_OUT\r\n"


def test_pipelined_commands_answer_in_order(client):
    batch = b"".join(b"put 1 0 60 3\r\nj%02d\r\n" % i for i in range(50))
    batch += b"stats-tube default\r\nreserve\r\nlist-tube-used\r\n"
    client.send(batch)
    ids = [int(client.raw_line().split()[1]) for _ in range(50)]
    assert ids == list(range(ids[0], ids[0] + 50))
    assert parse_yaml(client.reply().body)["current-jobs-ready"] == "50"
    assert client.raw_line() == b"RESERVED %d 3\r\nj00\r\n" % ids[0]
    assert client.raw_line() == b"USING default\r\n"


def test_commands_behind_a_waiting_reserve_wait_too(server):
    worker, producer = server.client(), server.client()
    worker.send(b"reserve\r\nlist-tube-used\r\n")
    assert worker.nothing_pending()
    job = put(producer, b"x")
    assert worker.raw_line() == b"RESERVED %d 1\r\nx\r\n" % job
    assert worker.raw_line() == b"USING default\r\n"
    worker.close()
    producer.close()


def test_put_split_across_packets(client):
    request = b"put 3 0 60 11\r\nhello world\r\n"
    for i in range(len(request)):
        client.send(request[i : i + 1])
        if i < len(request) - 1:
            client.sock.settimeout(0.001)
            with pytest.raises((TimeoutError, BlockingIOError)):
                client.sock.recv(1)
            client.sock.settimeout(10)
    line = client.raw_line()
    assert line.startswith(b"INSERTED ")
    job = int(line.split()[1])
    assert client.call(b"peek %d\r\n" % job) == b"FOUND %d 11\r\nhello world\r\n" % job


def test_errors(client):
    cases = {
        b"frobnicate\r\n": b"UNKNOWN_COMMAND\r\n",
        b"\r\n": b"UNKNOWN_COMMAND\r\n",
        b"put\r\n": b"UNKNOWN_COMMAND\r\n",
        b"kick\r\n": b"UNKNOWN_COMMAND\r\n",
        b"stats \r\n": b"BAD_FORMAT\r\n",
        b"statsx\r\n": b"BAD_FORMAT\r\n",
        b"reserve-foo\r\n": b"BAD_FORMAT\r\n",
        b"list-tubesx\r\n": b"BAD_FORMAT\r\n",
        b"delete x\r\n": b"BAD_FORMAT\r\n",
        b"delete 1 2\r\n": b"BAD_FORMAT\r\n",
        b"delete 18446744073709551616\r\n": b"BAD_FORMAT\r\n",
        b"delete 18446744073709551615\r\n": b"NOT_FOUND\r\n",
        b"release 1 1\r\n": b"BAD_FORMAT\r\n",
        b"bury 1\r\n": b"BAD_FORMAT\r\n",
        b"kick \r\n": b"BAD_FORMAT\r\n",
        b"kick 2 x\r\n": b"KICKED 0\r\n",
        b"peek 01\r\n": b"NOT_FOUND\r\n",
        b"stats-tube nope\r\n": b"NOT_FOUND\r\n",
        b"stats-tube -a\r\n": b"BAD_FORMAT\r\n",
        b"stats-job 99999\r\n": b"NOT_FOUND\r\n",
        b"pause-tube nope 1\r\n": b"NOT_FOUND\r\n",
        b"pause-tube -x 1\r\n": b"BAD_FORMAT\r\n",
    }
    for request, expected in cases.items():
        assert client.call(request) == expected, request


def test_put_with_bad_header_does_not_read_the_body(client):
    for header in (b"put -1 0 1 5", b"put 4294967296 0 1 5", b"put +1 0 1 5", b"put 1 0 1 5 x"):
        client.send(header + b"\r\nhello\r\n")
        assert client.raw_line() == b"BAD_FORMAT\r\n", header
        assert client.raw_line() == b"UNKNOWN_COMMAND\r\n", header  # "hello" as a command


def test_expected_crlf_and_id_burn(client):
    first = put(client, b"a")
    client.send(b"put 1 0 1 3\r\nabcde\r\n")
    assert client.raw_line() == b"EXPECTED_CRLF\r\n"
    assert client.raw_line() == b"UNKNOWN_COMMAND\r\n"  # the leftover "\r\n"... as a line
    # The failed put used up an id, as in beanstalkd.
    assert put(client, b"b") == first + 2


def test_job_too_big(client):
    body = b"a" * 65_536
    client.send(b"put 1 0 10 65536\r\n" + body + b"\r\nlist-tube-used\r\n")
    assert client.raw_line() == b"JOB_TOO_BIG\r\n"
    assert client.raw_line() == b"USING default\r\n"
    assert put(client, b"b" * 65_535)


def test_line_too_long(client):
    assert client.call(b"x" * 222 + b"\r\n") == b"UNKNOWN_COMMAND\r\n"  # 224 with CRLF: fits
    client.send(b"x" * 300 + b"\r\nlist-tube-used\r\n")
    assert client.raw_line() == b"BAD_FORMAT\r\n"
    assert client.raw_line() == b"USING default\r\n"


def test_quit_closes(client):
    client.send(b"quit\r\nlist-tube-used\r\n")
    assert client.closed_by_server()


def test_pause_tube(client):
    job = put(client, b"p")
    assert client.call(b"pause-tube default 100\r\n") == b"PAUSED\r\n"
    assert client.call(b"reserve-with-timeout 0\r\n") == b"TIMED_OUT\r\n"
    stats = yaml(client, b"stats-tube default\r\n")
    assert stats["pause"] == "100" and int(stats["pause-time-left"]) >= 98
    assert stats["cmd-pause-tube"] == "1"
    assert client.call(b"pause-tube default 0\r\n") == b"PAUSED\r\n"
    assert client.call(b"reserve-with-timeout 2\r\n").startswith(b"RESERVED %d" % job)


STATS_KEYS = (  # noqa: SIM905 - one readable block, in beanstalkd's order
    "current-jobs-urgent current-jobs-ready current-jobs-reserved current-jobs-delayed "
    "current-jobs-buried cmd-put cmd-peek cmd-peek-ready cmd-peek-delayed cmd-peek-buried "
    "cmd-reserve cmd-reserve-with-timeout cmd-delete cmd-release cmd-use cmd-watch cmd-ignore "
    "cmd-bury cmd-kick cmd-touch cmd-stats cmd-stats-job cmd-stats-tube cmd-list-tubes "
    "cmd-list-tube-used cmd-list-tubes-watched cmd-pause-tube job-timeouts total-jobs "
    "max-job-size current-tubes current-connections current-producers current-workers "
    "current-waiting total-connections pid version rusage-utime rusage-stime uptime "
    "binlog-oldest-index binlog-current-index binlog-records-migrated binlog-records-written "
    "binlog-max-size draining id hostname os platform"
).split()


def test_stats_documents(client):
    job = put(client, b"s", pri=5)
    stats = yaml(client, b"stats\r\n")
    assert list(stats) == STATS_KEYS
    assert stats["current-jobs-urgent"] == "1" and stats["cmd-put"] == "1"
    assert stats["max-job-size"] == "65535" and stats["draining"] == "false"
    tube = yaml(client, b"stats-tube default\r\n")
    assert list(tube) == [
        "name", "current-jobs-urgent", "current-jobs-ready", "current-jobs-reserved",
        "current-jobs-delayed", "current-jobs-buried", "total-jobs", "current-using",
        "current-watching", "current-waiting", "cmd-delete", "cmd-pause-tube", "pause",
        "pause-time-left",
    ]  # fmt: skip
    line = client.call(b"stats-job %d\r\n" % job)
    assert line == (
        b"OK 144\r\n---\nid: %d\ntube: default\nstate: ready\npri: 5\nage: 0\ndelay: 0\n"
        b"ttr: 60\ntime-left: 0\nfile: 0\nreserves: 0\ntimeouts: 0\nreleases: 0\n"
        b"buries: 0\nkicks: 0\n\r\n" % job
    )


def test_draining(server, client):
    server.drain()  # SIGUSR1 for beanstalkd; see test_mq_process.py for mq's signal
    wait_until(lambda: yaml(client, b"stats\r\n")["draining"] == "true", timeout=5)
    assert client.call(b"put 1 0 1 1\r\nx\r\n") == b"DRAINING\r\n"


def test_waiting_reserve_gets_deadline_soon(client):
    job = put(client, b"held", ttr=2)
    assert client.call(b"reserve\r\n").startswith(b"RESERVED %d " % job)
    # Nothing else is ready: this reserve waits, until the held job enters its last second.
    assert client.call(b"reserve\r\n") == b"DEADLINE_SOON\r\n"
    assert yaml(client, b"stats-job %d\r\n" % job)["state"] == "reserved"
