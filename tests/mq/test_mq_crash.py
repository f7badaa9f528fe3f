"""kill -9 during a put/reserve/delete load with fsync=always, then restart.

What a user of a durable queue is promised: a job whose INSERTED reply arrived survives;
a job whose DELETED reply arrived never comes back; a job that was reserved but not deleted
is ready again (at-least-once). Ids keep increasing after the restart.
"""

from __future__ import annotations

import threading

from minisys.beanstalk.codec import parse_yaml
from minisys.testing import RawBeanstalkClient, ServerProcess, wait_until

# Stop loading and crash the server once this many puts were acknowledged.
ACKED_BEFORE_CRASH = 300


def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path):
    acked: dict[int, bytes] = {}
    deleted: set[int] = set()
    stop = threading.Event()

    def producer(port: int, name: int) -> None:
        conn = RawBeanstalkClient(port)
        n = 0
        try:
            while not stop.is_set():
                body = b"p%d-%d" % (name, n)
                n += 1
                reply = conn.request(b"put 10 0 60 %d\r\n%b\r\n" % (len(body), body))
                assert reply.word == "INSERTED"
                acked[int(reply.args[0])] = body
        except OSError:
            pass

    def worker(port: int) -> None:
        conn = RawBeanstalkClient(port)
        n = 0
        try:
            while not stop.is_set():
                reply = conn.request(b"reserve-with-timeout 1\r\n")
                if reply.word != "RESERVED":
                    continue
                n += 1
                if n % 3:  # every third job stays reserved when the crash comes
                    job_id = int(reply.args[0])
                    if conn.request(b"delete %d\r\n" % job_id).word == "DELETED":
                        deleted.add(job_id)
        except OSError:
            pass

    data_dir = str(tmp_path / "mq")
    with ServerProcess("mq", "--data-dir", data_dir, "--fsync", "always") as mq:
        threads = [threading.Thread(target=producer, args=(mq.port, i)) for i in range(3)]
        threads += [threading.Thread(target=worker, args=(mq.port,)) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(acked) >= ACKED_BEFORE_CRASH, timeout=30)
        finally:
            mq.kill()
            stop.set()
            for t in threads:
                t.join(10)

    with ServerProcess("mq", "--data-dir", data_dir, "--fsync", "always") as mq:
        conn = RawBeanstalkClient(mq.port)
        for job_id, body in acked.items():
            reply = conn.request(b"peek %d\r\n" % job_id)
            if job_id in deleted:
                assert reply.word == "NOT_FOUND", f"deleted job {job_id} came back"
                continue
            # Not deleted (or its DELETED never arrived): it may be gone only if a delete
            # was in flight; every job still there is intact and ready.
            if reply.word == "FOUND":
                assert reply.body == body
                stats = parse_yaml(conn.request(b"stats-job %d\r\n" % job_id).body)
                assert stats["state"] == "ready"
        missing = [
            j for j in acked
            if j not in deleted and conn.request(b"peek %d\r\n" % j).word == "NOT_FOUND"
        ]  # fmt: skip
        # At most one delete per worker can be in flight when the crash comes.
        assert len(missing) <= 2, missing
        reply = conn.request(b"put 1 0 60 1\r\nx\r\n")
        assert int(reply.args[0]) > max(acked)
