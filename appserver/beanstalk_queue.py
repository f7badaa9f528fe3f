"""The queue over the beanstalkd protocol: mq, or a real beanstalkd.

The shop only ever *puts* jobs (the worker reserves them), so this side is small: one
connection, told once to `use` the tube, shared by every request. Concurrent puts are
pipelined on it (`minisys.beanstalk.client` sends the requests of one event-loop turn in
one write and matches the replies in order), so a burst of orders is one stream of puts,
not one connection each.

    put 1024 0 60 187\r\n{"order_id": 17, "request_id": "4aa5…", …}\r\n
    INSERTED 42\r\n

A put that cannot reach mq in time raises `StoreUnavailable` (the client's connect
timeout, and its read timeout: one watchdog timer per connection rather than an
`asyncio.timeout` per put, which cost ~7 µs of CPU per order); the order flow then leaves
the job in its outbox (`outbox.py`) for the drainer to put later. A put whose reply was
lost may have been inserted anyway: that is one of the ways a job arrives twice, and why
the worker dedupes.

Read next: `outbox.py`, `worker/source.py` (the worker's side of the same protocol).

Simpler than the real thing: one connection (a busy producer would shard over several).
"""

from __future__ import annotations

from appserver.stores import StoreError, StoreUnavailable
from minisys.beanstalk.client import BeanstalkClient, BeanstalkError


class BeanstalkQueue:
    """`Queue` on one pipelined beanstalkd connection (reconnected when it breaks)."""

    name = "queue"

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.client = BeanstalkClient(host, port, timeout=timeout, read_timeout=timeout)
        self._using: str | None = None

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(self.name, f"{self.host}:{self.port}: {exc or 'timed out'}")

    async def put(self, tube: str, body: bytes, *, ttr: int, pri: int = 1024) -> int:
        try:
            if self._using != tube:
                await self.client.use(tube)  # remembered across reconnects
                self._using = tube
            return await self.client.put(body, pri=pri, delay=0, ttr=ttr)
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from None
        except BeanstalkError as exc:
            raise StoreError(f"queue put: {exc}") from None

    async def ping(self) -> None:
        """`stats`: is mq there and speaking beanstalkd?"""
        try:
            await self.client.stats()
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from None
        except BeanstalkError as exc:
            raise StoreError(f"queue stats: {exc}") from None

    async def close(self) -> None:
        await self.client.close()
