"""The worker's connection to mq: the beanstalkd verbs `runner.py` needs, nothing more.

One `BeanstalkSource` per lane wraps one `minisys.beanstalk.client.BeanstalkClient`. It
watches only the `emails` tube and turns the protocol's answers into what the loop wants
to know: a reserved job, and True/False for "was the job still
ours" (`NOT_FOUND` is a normal outcome after a TTR ran out, not an error). Cancelling a
waiting reserve (graceful stop) closes the connection, which hands back at once any job
mq reserved for us just then.

    reserve                 → RESERVED 42 187\\r\\n{…}\\r\\n   (waits for one)
    delete 42               → DELETED                      or   NOT_FOUND
    release 42 1024 4       → RELEASED                     or   NOT_FOUND
    bury 42 1024            → BURIED                       or   NOT_FOUND
    touch 42                → TOUCHED                      or   NOT_FOUND
    stats-job 42            → OK 170\\r\\n---\\nid: 42\\n…       or   NOT_FOUND

Read next: `runner.py`.

Simpler than the real thing: one tube; no reserve-job, peek or kick (that is for humans,
with `python -m mq.cli` or telnet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from appserver.worker.runner import JobSource, ReservedJob
from minisys.beanstalk.client import BeanstalkClient, BeanstalkError

# mq must answer a command (other than reserve) within this many seconds. A server that
# stays silent longer is treated as gone: the lane reconnects instead of hanging forever.
REPLY_TIMEOUT = 10.0


class BeanstalkSource:
    def __init__(self, client: BeanstalkClient) -> None:
        self.client = client

    async def watch_only(self, tube: str) -> None:
        await self._call(self.client.watch_only(tube))

    async def reserve(self) -> ReservedJob:
        """A plain `reserve`, never `reserve-with-timeout`: in beanstalkd 1.12 a connection
        that reserved a job *with a timeout* and then goes silent (a frozen worker) keeps
        that job past its TTR — the pending timeout fires, the connection is not
        rescheduled, and the job's deadline is never checked again (beanstalkd issues
        #380/#262, PR #174). Our lanes stop by cancelling the reserve instead."""
        job = await self._call(self.client.reserve(), None)
        return job  # type: ignore[return-value]

    async def delete(self, job_id: int) -> bool:
        return await self._call(self.client.delete(job_id))  # type: ignore[return-value]

    async def release(self, job_id: int, pri: int, delay: int) -> bool:
        return await self._call(self.client.release(job_id, pri=pri, delay=delay))  # type: ignore[return-value]

    async def bury(self, job_id: int, pri: int) -> bool:
        return await self._call(self.client.bury(job_id, pri=pri))  # type: ignore[return-value]

    async def touch(self, job_id: int) -> bool:
        return await self._call(self.client.touch(job_id))  # type: ignore[return-value]

    async def stats_job(self, job_id: int) -> dict[str, str] | None:
        return await self._call(self.client.stats_job(job_id))  # type: ignore[return-value]

    async def close(self) -> None:
        await self.client.close()

    @staticmethod
    async def _call(call: Awaitable[object], timeout: float | None = REPLY_TIMEOUT) -> object:
        """An error word from mq (BAD_FORMAT, INTERNAL_ERROR…) or no answer in time means
        this connection is in a state we do not understand: treat it like a broken
        connection, and let the lane start over."""
        try:
            async with asyncio.timeout(timeout):
                return await call
        except BeanstalkError as exc:
            raise ConnectionError(f"mq answered {exc}") from None
        except TimeoutError:
            raise ConnectionError(f"mq did not answer within {timeout}s") from None


def connector(host: str, port: int) -> Callable[[], Awaitable[JobSource]]:
    """What `Worker` calls for each lane (and again after mq went away)."""

    async def connect() -> JobSource:
        return BeanstalkSource(await BeanstalkClient.connect(host, port))

    return connect
