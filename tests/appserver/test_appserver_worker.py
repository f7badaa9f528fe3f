"""The e-mail worker on a fake beanstalkd: send once, retry with back-off, bury, touch, stop."""

from __future__ import annotations

import asyncio
import json
import mailbox
import threading

import pytest

from appserver.worker.mbox import MboxOutbox, frame, message_ids
from appserver.worker.render import PoisonJob, parse_job, render
from appserver.worker.runner import Worker, WorkerSettings
from minisys.testing import async_wait_until


def job(order_id: int = 7, **overrides) -> dict:
    doc = {
        "order_id": order_id,
        "request_id": f"req-{order_id}",
        "to": "ada@example.com",
        "name": "Ada Lovelace",
        "items": [{"sku": "sku-1", "name": "Teapot", "price": 1999, "qty": 2}],
        "total": 3998,
        "created_at": "2026-11-29T20:41:07Z",
    }
    doc.update(overrides)
    return doc


def put(beanstalk, doc: dict, ttr: int = 60) -> int:
    return beanstalk.put(json.dumps(doc).encode(), ttr)


async def work_until(worker: Worker, predicate) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await async_wait_until(predicate, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def read_mbox(path) -> list:
    return list(mailbox.mbox(str(path)))


def test_a_job_becomes_one_message_and_is_deleted(tmp_path, beanstalk):
    outbox = MboxOutbox(tmp_path / "outbox.mbox")
    put(beanstalk, job(7))
    worker = Worker(beanstalk.connect, outbox)

    async def done():
        return beanstalk.in_state("deleted")

    asyncio.run(work_until(worker, done))
    (msg,) = read_mbox(tmp_path / "outbox.mbox")
    assert msg["Message-ID"] == "<order-7@minisys.local>"
    assert msg["X-Request-ID"] == "req-7"
    assert msg["To"] == "Ada Lovelace <ada@example.com>"
    assert msg["Subject"] == "Your order #7"
    assert "39.98" in msg.get_payload()
    assert worker.stats.sent == 1


def test_a_redelivered_job_sends_nothing_twice(tmp_path, beanstalk):
    outbox = MboxOutbox(tmp_path / "outbox.mbox")
    put(beanstalk, job(7))
    put(beanstalk, job(7))  # the same order's job again (outbox drained twice, TTR expiry…)
    put(beanstalk, job(8))
    worker = Worker(beanstalk.connect, outbox, WorkerSettings(concurrency=2))

    async def done():
        return len(beanstalk.in_state("deleted")) == 3

    asyncio.run(work_until(worker, done))
    assert [m["Message-ID"] for m in read_mbox(tmp_path / "outbox.mbox")] == [
        "<order-7@minisys.local>",
        "<order-8@minisys.local>",
    ]
    assert worker.stats.sent == 2 and worker.stats.duplicates == 1


def test_two_processes_sharing_the_mbox_dedupe_through_the_file(tmp_path):
    path = tmp_path / "outbox.mbox"
    first, second = MboxOutbox(path), MboxOutbox(path)
    message = render(job(7)).as_bytes()
    assert first.append("<order-7@minisys.local>", message, 0)
    assert not second.append("<order-7@minisys.local>", message, 0)
    assert second.append("<order-8@minisys.local>", render(job(8)).as_bytes(), 0)
    assert not first.append("<order-8@minisys.local>", message, 0)
    assert len(read_mbox(path)) == 2


def test_malformed_jobs_are_buried_at_once(tmp_path, beanstalk):
    outbox = MboxOutbox(tmp_path / "outbox.mbox")
    beanstalk.put(b"not json")
    put(beanstalk, job(9, total="lots"))
    put(beanstalk, job(10, to="no-at-sign"))
    worker = Worker(beanstalk.connect, outbox)

    async def done():
        return len(beanstalk.in_state("buried")) == 3

    asyncio.run(work_until(worker, done))
    assert all(j.reserves == 1 for j in beanstalk.jobs.values())
    assert not (tmp_path / "outbox.mbox").exists() or read_mbox(tmp_path / "outbox.mbox") == []


class BrokenOutbox:
    def __init__(self) -> None:
        self.calls = 0

    def append(self, message_id: str, message: bytes, now: float) -> bool:
        self.calls += 1
        raise OSError(28, "No space left on device")


def test_failures_are_released_with_growing_delays_then_buried(beanstalk):
    put(beanstalk, job(7))
    worker = Worker(
        beanstalk.connect,
        BrokenOutbox(),
        WorkerSettings(max_attempts=4, backoff_base=1.0, backoff_cap=3.0),
    )
    delays = []

    async def scenario():
        (fake,) = beanstalk.jobs.values()
        source = await beanstalk.connect()
        for _ in range(4):
            reserved = await source.reserve()
            await worker.handle(source, reserved)
            if fake.state == "delayed":
                delays.append(fake.last_delay)
                fake.state = "ready"  # the delay elapses
        return fake.state

    assert asyncio.run(scenario()) == "buried"
    assert delays == [1, 2, 3]  # 1·2^0, 1·2^1, capped at 3
    assert worker.stats.released == 3 and worker.stats.buried == 1


def test_a_long_job_is_touched(tmp_path, beanstalk):
    put(beanstalk, job(7), ttr=1)
    touched = threading.Event()

    class SlowOutbox(MboxOutbox):
        def append(self, message_id, message, now=None):
            # Finish only once the keepalive has touched the job at least once.
            assert touched.wait(10), "the job was never touched"
            return super().append(message_id, message, now)

    worker = Worker(
        beanstalk.connect, SlowOutbox(tmp_path / "o.mbox"), WorkerSettings(touch_check_after=0.01)
    )

    async def done():
        if beanstalk.touches:
            touched.set()
        return beanstalk.in_state("deleted")

    asyncio.run(work_until(worker, done))
    assert worker.stats.touched >= 1 and worker.stats.sent == 1


def test_graceful_stop_finishes_the_current_job(tmp_path, beanstalk):
    put(beanstalk, job(7))
    started, release = threading.Event(), threading.Event()

    class GatedOutbox(MboxOutbox):
        def append(self, message_id, message, now=None):
            started.set()
            assert release.wait(10)
            return super().append(message_id, message, now)

    worker = Worker(beanstalk.connect, GatedOutbox(tmp_path / "o.mbox"))

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await async_wait_until(lambda: asyncio.sleep(0, started.is_set()))
        stop.set()  # SIGTERM while the job is being sent
        for _ in range(20):  # give the worker every chance to (wrongly) quit
            await asyncio.sleep(0)
        assert not task.done()
        release.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert beanstalk.in_state("deleted") and len(read_mbox(tmp_path / "o.mbox")) == 1


def test_concurrency_n_sends_n_jobs_at_once(tmp_path, beanstalk):
    for order_id in (1, 2, 3):
        put(beanstalk, job(order_id))
    in_flight, lock, all_in = [0], threading.Lock(), threading.Event()

    class CountingOutbox(MboxOutbox):
        def append(self, message_id, message, now=None):
            with lock:
                in_flight[0] += 1
                if in_flight[0] == 3:
                    all_in.set()
            # Finish only once all three are being sent together: one lane would hang here.
            assert all_in.wait(10), "the jobs were not sent concurrently"
            return super().append(message_id, message, now)

    worker = Worker(
        beanstalk.connect,
        CountingOutbox(tmp_path / "o.mbox"),
        WorkerSettings(concurrency=3),
    )

    async def done():
        return len(beanstalk.in_state("deleted")) == 3

    asyncio.run(work_until(worker, done))
    assert worker.stats.sent == 3 and len(read_mbox(tmp_path / "o.mbox")) == 3


def test_stop_while_idle_returns_promptly(tmp_path, beanstalk):
    worker = Worker(
        beanstalk.connect, MboxOutbox(tmp_path / "o.mbox"), WorkerSettings(concurrency=3)
    )

    async def scenario():
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(worker.run(stop, on_ready=ready.set))
        await ready.wait()  # lanes are waiting in reserve
        stop.set()
        await asyncio.wait_for(task, 4)  # the waiting reserves are cancelled at once

    asyncio.run(scenario())


def test_mbox_quotes_from_lines_and_finds_ids_only_in_headers():
    msg = b"From: a@b\nMessage-ID: <x@y>\n\nFrom here on\n>From quoted\nMessage-ID: <body@y>\n"
    framed = frame(msg, 0)
    assert framed.startswith(b"From shop@minisys.local Thu Jan  1 00:00:00 1970\n")
    assert b"\n>From here on\n>>From quoted\n" in framed
    assert message_ids(framed + framed) == ["<x@y>", "<x@y>"]


def test_render_rejects_what_it_cannot_render():
    with pytest.raises(PoisonJob):
        parse_job(b"[1, 2]")
    with pytest.raises(PoisonJob):
        parse_job(json.dumps(job(order_id="7")).encode())
    with pytest.raises(PoisonJob):
        render(job(created_at="yesterday"))
    assert render(job()).as_bytes() == render(job()).as_bytes()  # deterministic
