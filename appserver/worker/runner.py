"""The worker's loop: reserve a job, send its e-mail once, delete it — or retry, or bury.

Each of `concurrency` lanes holds its own connection to mq (a reserved job belongs to the
connection that reserved it) and walks this table for every job:

    state        event                               next / action
    reserved     body not a valid job (PoisonJob)    bury  (no retry can fix it)
    reserved     e-mail appended (or already there)  delete
    reserved     sending failed, attempts < N        release with delay base·2^(attempts-1)
    reserved     sending failed, attempts ≥ N        bury  (dead letter, for a human: kick)
    reserved     still working after a while         touch (restart the TTR clock)
    reserved     worker dies / stalls past TTR       (mq) ready again → another lane or
                                                      process reserves it; mbox dedupes

Attempts are counted by mq, not by us (`stats-job` → `reserves`), so they survive a worker
restart and include deliveries whose worker died.

Graceful stop (SIGTERM): a lane waiting in `reserve` stops at once (closing its connection
hands back anything mq had just reserved for it); a lane in the middle of a job finishes
that job — append, delete — before it exits.

Read next: `render.py`, `mbox.py`, and `../outbox.py` for where jobs come from.

Simpler than the real thing: no per-job timeout of our own (the TTR is it), no metrics
endpoint (the log is the record), one tube.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from appserver.worker.mbox import MboxOutbox
from appserver.worker.render import PoisonJob, message_id, parse_job, render
from minisys.logs import get_logger, request_id

EMAIL_TUBE = "emails"
# Priorities for released and buried jobs: beanstalkd's customary default.
JOB_PRIORITY = 1024
# Reconnect back-off after mq went away: from a tenth of a second up to five seconds.
RECONNECT_BASE = 0.1
RECONNECT_CAP = 5.0
# A job still being worked on after this long starts being touched; touches then come
# every (ttr - 1) / 2 seconds (the last second of a TTR is beanstalkd's safety margin),
# but never more often than MIN_TOUCH_INTERVAL.
TOUCH_CHECK_AFTER = 0.5
MIN_TOUCH_INTERVAL = 0.1

log = get_logger("appserver.worker")


class ReservedJob(Protocol):
    id: int
    body: bytes


class JobSource(Protocol):
    """The few beanstalkd verbs the worker uses, on one connection."""

    async def watch_only(self, tube: str) -> None: ...
    async def reserve(self) -> ReservedJob:
        """Wait for a job, as long as it takes (cancel to stop waiting)."""
        ...

    async def delete(self, job_id: int) -> bool: ...
    async def release(self, job_id: int, pri: int, delay: int) -> bool: ...
    async def bury(self, job_id: int, pri: int) -> bool: ...
    async def touch(self, job_id: int) -> bool: ...
    async def stats_job(self, job_id: int) -> dict[str, str] | None: ...
    async def close(self) -> None: ...


@dataclass
class WorkerSettings:
    concurrency: int = 1
    max_attempts: int = 5  # deliveries before a failing job is buried
    backoff_base: float = 1.0  # seconds before the 2nd attempt; doubles each time
    backoff_cap: float = 300.0
    stall: float = 0.0  # demo/test seam: pause this long before each send
    touch_check_after: float = TOUCH_CHECK_AFTER


@dataclass
class WorkerStats:
    sent: int = 0
    duplicates: int = 0
    released: int = 0
    buried: int = 0
    touched: int = 0


class Worker:
    def __init__(
        self,
        connect: Callable[[], Awaitable[JobSource]],
        outbox: MboxOutbox,
        settings: WorkerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connect = connect
        self.outbox = outbox
        self.settings = settings or WorkerSettings()
        self.clock = clock
        self.stats = WorkerStats()
        self._on_ready: Callable[[], None] | None = None

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Work until `stop` is set; jobs in progress are finished first. `on_ready` is
        called once, when the first lane is connected and watching the tube."""
        self._on_ready = on_ready
        await asyncio.gather(*(self._lane(n, stop) for n in range(self.settings.concurrency)))

    async def _lane(self, lane: int, stop: asyncio.Event) -> None:
        backoff = RECONNECT_BASE
        while not stop.is_set():
            try:
                source = await self.connect()
            except (ConnectionError, OSError) as exc:
                log.warning("lane %d: cannot reach mq (%s); retrying in %.1fs", lane, exc, backoff)
                await _wait(stop, backoff)
                backoff = min(RECONNECT_CAP, backoff * 2)
                continue
            try:
                await source.watch_only(EMAIL_TUBE)
                backoff = RECONNECT_BASE
                if self._on_ready is not None:
                    self._on_ready, ready = None, self._on_ready
                    ready()
                while not stop.is_set():
                    job = await self._reserve(source, stop)
                    if job is not None:
                        await self.handle(source, job)
            except (ConnectionError, OSError) as exc:
                log.warning("lane %d: lost mq (%s); reconnecting", lane, exc)
                await _wait(stop, backoff)
                backoff = min(RECONNECT_CAP, backoff * 2)
            finally:
                await source.close()

    async def _reserve(self, source: JobSource, stop: asyncio.Event) -> ReservedJob | None:
        """The next job, or None when `stop` is set first."""
        reserving = asyncio.ensure_future(source.reserve())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({reserving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if reserving.done():
            return reserving.result()
        # Stopping while idle: abandon the reserve; closing the connection returns any job
        # mq may have handed us in the meantime to the ready queue.
        reserving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reserving
        return None

    async def handle(self, source: JobSource, job: ReservedJob) -> None:
        """Process one reserved job to its end: deleted, released or buried."""
        token = request_id.set(None)
        try:
            try:
                data = parse_job(job.body)
                request_id.set(data.get("request_id") or None)
                message = render(data).as_bytes()
            except PoisonJob as exc:
                log.error("job %d is malformed, burying it: %s", job.id, exc)
                await source.bury(job.id, JOB_PRIORITY)
                self.stats.buried += 1
                return
            mid = message_id(data["order_id"])
            failure: Exception | None = None
            async with self._keepalive(source, job.id):
                try:
                    if self.settings.stall:
                        log.info(
                            "job %d: stalling %.1fs before sending (--stall)",
                            job.id,
                            self.settings.stall,
                        )
                        await asyncio.sleep(self.settings.stall)
                    written = await asyncio.to_thread(
                        self.outbox.append, mid, message, self.clock()
                    )
                except Exception as exc:  # any failure to send is retried with back-off
                    failure = exc
            if failure is not None:
                await self._retry_later(source, job, failure)
                return
            if written:
                self.stats.sent += 1
                log.info("order %s: confirmation sent to %s", data["order_id"], data["to"])
            else:
                self.stats.duplicates += 1
                log.info(
                    "order %s: already sent, skipping the redelivered job %d",
                    data["order_id"],
                    job.id,
                )
            if not await source.delete(job.id):
                log.warning(
                    "job %d was no longer ours (TTR expired?); the e-mail went out "
                    "once all the same",
                    job.id,
                )
        finally:
            request_id.reset(token)

    async def _retry_later(self, source: JobSource, job: ReservedJob, exc: Exception) -> None:
        stats = await source.stats_job(job.id)
        attempts = int(stats.get("reserves", 1)) if stats else 1
        if attempts >= self.settings.max_attempts:
            log.error("job %d failed %d times, burying it: %r", job.id, attempts, exc)
            await source.bury(job.id, JOB_PRIORITY)
            self.stats.buried += 1
            return
        delay = min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** (attempts - 1))
        log.warning(
            "job %d failed (attempt %d of %d), retrying in %ds: %r",
            job.id,
            attempts,
            self.settings.max_attempts,
            math.ceil(delay),
            exc,
        )
        await source.release(job.id, JOB_PRIORITY, math.ceil(delay))
        self.stats.released += 1

    @contextlib.asynccontextmanager
    async def _keepalive(self, source: JobSource, job_id: int) -> AsyncIterator[None]:
        """Touch the job while the body of the `async with` runs longer than expected.

        The touching task and the body never use the connection at the same time: the
        body does not touch mq, and on exit we wait for the task instead of cancelling it
        in the middle of a command."""
        done = asyncio.Event()

        async def touch_while_busy() -> None:
            if await _wait(done, self.settings.touch_check_after):
                return
            stats = await source.stats_job(job_id)
            ttr = int(stats.get("ttr", 1)) if stats else 1
            interval = max(MIN_TOUCH_INTERVAL, (ttr - 1) / 2)
            while not await _wait(done, interval):
                if not await source.touch(job_id):
                    return
                self.stats.touched += 1

        task = asyncio.create_task(touch_while_busy())
        try:
            yield
        finally:
            done.set()
            try:
                await task
            except (ConnectionError, OSError) as exc:
                log.warning("touching job %d failed: %s", job_id, exc)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True if it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()
