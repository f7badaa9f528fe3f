"""greenstalk (a real beanstalkd client library) end to end against mq and beanstalkd.

The same tests run against mq and, when installed, against the real beanstalkd: a client
written for beanstalkd must not notice the difference. Also: our own asyncio client
against the real beanstalkd, and mq started with beanstalkd's flags on a UNIX socket.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys

import pytest

from minisys.beanstalk.client import BeanstalkClient, BeanstalkError
from minisys.testing import REPO_ROOT, ServerProcess, beanstalkd

greenstalk = pytest.importorskip("greenstalk", reason="greenstalk is not installed")

pytestmark = pytest.mark.interop


@pytest.fixture(params=["mq", "beanstalkd"])
def port(request):
    if request.param == "mq":
        with ServerProcess("mq") as proc:
            yield proc.port
        return
    if shutil.which("beanstalkd") is None:
        pytest.skip("beanstalkd is not installed (apt-get install beanstalkd)")
    with beanstalkd() as real:
        yield real.port


def test_greenstalk_lifecycle(port):
    with greenstalk.Client(("127.0.0.1", port), use="emails", watch="emails") as client:
        first = client.put("hello", priority=10)
        second = client.put("urgent", priority=1)
        job = client.reserve(timeout=1)
        assert (job.id, job.body) == (second, "urgent")
        client.release(job, priority=5, delay=0)
        client.bury(client.reserve(timeout=1))
        assert client.peek_buried().id == second
        assert client.kick(10) == 1
        stats = client.stats_job(second)
        assert stats["state"] == "ready" and stats["buries"] == 1 and stats["releases"] == 1
        assert client.stats_tube("emails")["current-jobs-ready"] == 2
        assert client.stats()["current-jobs-ready"] == 2
        for expected in (first, second):  # bury gave `second` the default priority 65536
            job = client.reserve(timeout=1)
            assert job.id == expected
            client.touch(job)
            client.delete(job)
        with pytest.raises(greenstalk.TimedOutError):
            client.reserve(timeout=0)
        with pytest.raises(greenstalk.NotFoundError):
            client.delete(first)
        assert client.using() == "emails"
        assert client.watching() == ["emails"]
        assert "emails" in client.tubes()


def test_greenstalk_errors_and_binary(port):
    with greenstalk.Client(("127.0.0.1", port), encoding=None) as client:
        body = bytes(range(256))
        job_id = client.put(body)
        assert client.peek(job_id).body == body
        with pytest.raises(greenstalk.JobTooBigError):
            client.put(b"x" * 70_000)
        with pytest.raises(greenstalk.NotIgnoredError):
            client.ignore("default")
        with pytest.raises(greenstalk.NotFoundError):
            client.stats_tube("no-such-tube")
        client.pause_tube("default", 100)
        with pytest.raises(greenstalk.TimedOutError):
            client.reserve(timeout=0)


def test_our_client_end_to_end(port):
    async def main() -> None:
        client = await BeanstalkClient.connect("127.0.0.1", port)
        await client.use("jobs")
        await client.watch_only("jobs")
        ids = await asyncio.gather(*(client.put(b"job%d" % i, pri=i) for i in range(20)))
        assert ids == sorted(ids)
        job = await client.reserve(timeout=1)
        assert job.id == ids[0] and job.body == b"job0"
        assert await client.bury(job.id, 3)
        assert (await client.peek_buried()).id == ids[0]
        assert await client.kick(1) == 1
        assert (await client.stats_job(ids[0]))["kicks"] == "1"
        assert await client.delete(ids[0])
        assert not await client.delete(ids[0])
        assert await client.list_tubes_watched() == ["jobs"]
        with pytest.raises(BeanstalkError) as err:
            await client.ignore("jobs")
        assert err.value.word == "NOT_IGNORED"
        assert await client.stats_tube("nope") is None
        await client.close()

    asyncio.run(main())


def test_our_client_reconnects_and_keeps_its_tubes():
    async def main(port: int) -> None:
        client = await BeanstalkClient.connect("127.0.0.1", port)
        await client.use("jobs")
        await client.watch_only("jobs")
        # A request in flight when the connection drops fails with ConnectionError...
        waiting = asyncio.ensure_future(client.reserve())
        await asyncio.sleep(0.05)
        client._proto.transport.abort()
        with pytest.raises(ConnectionError):
            await waiting
        # ...and the next request reconnects, with the same tube choices as before.
        job_id = await client.put(b"after")
        assert await client.list_tube_used() == "jobs"
        assert await client.list_tubes_watched() == ["jobs"]
        assert (await client.reserve(timeout=1)).id == job_id
        await client.close()

    with ServerProcess("mq") as proc:
        asyncio.run(main(proc.port))


def test_mq_accepts_beanstalkd_flags_and_unix_socket(tmp_path):
    path = tmp_path / "mq.sock"
    args = ["-l", f"unix:{path}", "-b", str(tmp_path / "data"), "-f", "0", "-z", "100"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mq", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        while not (line := proc.stdout.readline()).startswith("READY"):
            assert line, "mq exited before READY"
        assert line.strip() == f"READY mq unix:{path}"
        with greenstalk.Client(str(path)) as client:
            job_id = client.put("over a unix socket")
            assert client.reserve(timeout=1).id == job_id
            with pytest.raises(greenstalk.JobTooBigError):
                client.put("x" * 101)
            assert client.stats()["max-job-size"] == 100
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
