"""The transactional outbox: an order's e-mail job is never lost, even with mq down.

The trap: "commit the order, then put the e-mail job on the queue" is two writes to two
systems. If the queue is down (or we crash) between them, the customer paid and never
hears about it. Putting the job first is worse: an e-mail for an order that then fails.

The fix, used here: the job is written *into the database, in the same MULTI/EXEC as the
order* (`outbox:<order_id>`). Either both exist or neither does. Then:

    after commit ─▶ put the job on mq (tube `emails`) ─▶ DEL outbox:<order_id> (later)
                        │ mq down: leave it
                        ▼
    drainer (every `interval` s, each appserver): SCAN outbox:* ─▶ put ─▶ DEL

The DEL of a published entry is not sent on its own: it rides along in the *next* order's
MULTI/EXEC (`cleanup_ops`), which is going to the database anyway, or in the drainer's
next pass. On a durable database every write costs an fsync; piggybacking saves one per
order. Until then the entry is young, and the drainers leave young entries alone.

So a job is put *at least once*. It can be put twice: the put succeeds but the DEL does
not (db blip, crash), or two appservers' drainers pick the same entry. That is fine,
because the worker is idempotent: it writes each order's e-mail only once (Message-ID =
order id; see `appserver/worker/mbox.py`). At-least-once delivery plus an idempotent
consumer gives exactly-once *effects*, which is the best a distributed system can offer.

The drainer leaves entries younger than `min_age` alone so it does not race the request
that is publishing them right now.

Read next: `orders.py` (writes the entry), `appserver/worker/` (consumes the job).

Simpler than the real thing: production outboxes are tailed from the database's log
(change data capture, e.g. Debezium) instead of scanned, and entries are claimed with a
lease so drainers do not overlap.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable

from appserver.stores import Db, Op, Queue, StoreError, StoreUnavailable
from minisys.logs import get_logger
from minisys.metrics import Registry

EMAIL_TUBE = "emails"
OUTBOX_PREFIX = "outbox:"
# Time-to-run for an e-mail job: a worker that holds it longer without `touch` is presumed
# dead and the job goes back to ready. Rendering and appending one e-mail takes ms.
DEFAULT_JOB_TTR = 60
# How often the drainer looks for stranded jobs, and how old one must be to be taken.
DRAIN_INTERVAL = 2.0
DRAIN_MIN_AGE = 5.0
# At most this many entries per drain pass, so one pass is bounded work.
DRAIN_BATCH = 500
# Published entries whose DEL waits for a ride; past this many they are deleted at once.
MAX_UNCLEANED = 10_000
# At most this many DELs ride along in one order's transaction.
CLEANUP_PER_TRANSACTION = 100
# After a put fails, orders skip mq for this long (their jobs wait in the outbox for the
# drainer, which keeps trying) instead of each waiting for a timeout from a dead mq.
QUEUE_COOLDOWN = 1.0

log = get_logger("appserver.outbox")


def outbox_key(order_id: int) -> str:
    return f"{OUTBOX_PREFIX}{order_id}"


class Outbox:
    def __init__(
        self,
        db: Db,
        queue: Queue,
        *,
        registry: Registry | None = None,
        ttr: int = DEFAULT_JOB_TTR,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.queue = queue
        self.ttr = ttr
        self.clock = clock
        self._published: dict[int, None] = {}  # on mq, outbox entry not yet deleted
        self._skip_until = float("-inf")
        registry = registry or Registry()
        self._puts = registry.counter(
            "appserver_email_jobs_total", "E-mail jobs put on the queue, by path.", ["path"]
        )
        self._stranded = registry.counter(
            "appserver_outbox_stranded_total", "Jobs left in the outbox because mq failed."
        )

    def entry(self, order_id: int, job_json: str) -> tuple[str, str]:
        """The key and value the order's transaction writes (in its MSET): the job's JSON
        object with `queued_at` added as its last member."""
        # Spliced into the text the order encodes anyway for mq: the same string as
        # json.dumps({**job, "queued_at": now}) (json writes a float as its repr), for
        # one json.dumps less per order. A job always has members, so `, ` is right.
        return outbox_key(order_id), f'{job_json[:-1]}, "queued_at": {self.clock()!r}}}'

    async def publish(self, order_id: int, body: bytes, *, path: str = "direct") -> bool:
        """Put the job on mq; its outbox entry is deleted later. False if mq is down."""
        if path == "direct" and self.clock() < self._skip_until:
            self._stranded.inc()
            return False
        try:
            await self.queue.put(EMAIL_TUBE, body, ttr=self.ttr)
        except (StoreUnavailable, StoreError) as exc:
            self._skip_until = self.clock() + QUEUE_COOLDOWN
            self._stranded.inc()
            log.warning("order %s: e-mail job kept in the outbox (%s)", order_id, exc)
            return False
        self._puts.inc(path=path)
        self._published[order_id] = None
        if len(self._published) > MAX_UNCLEANED:
            await self.flush()
        return True

    def cleanup_ops(self) -> tuple[list[Op], list[int]]:
        """DELs of published entries, to ride in a transaction; call `cleaned` after EXEC."""
        ids = list(itertools.islice(self._published, CLEANUP_PER_TRANSACTION))
        if not ids:
            return [], []
        return [("DEL", *(outbox_key(i) for i in ids))], ids

    def cleaned(self, ids: list[int]) -> None:
        for order_id in ids:
            self._published.pop(order_id, None)

    async def flush(self) -> None:
        """Delete every published entry now (drainer pass, shutdown)."""
        ids = list(self._published)
        if ids:
            try:
                await self.db.delete(*(outbox_key(i) for i in ids))
            except (StoreUnavailable, StoreError) as exc:
                # If we never manage, a drainer puts them again; the worker dedupes.
                log.warning("outbox: %d published entries not cleared yet (%s)", len(ids), exc)
                return
            self.cleaned(ids)

    async def drain_once(self, min_age: float = DRAIN_MIN_AGE) -> int:
        """Publish every outbox entry older than `min_age`; return how many went out."""
        await self.flush()
        keys = sorted(await self.db.scan(OUTBOX_PREFIX + "*"))[:DRAIN_BATCH]
        sent = 0
        for key, raw in zip(keys, await self.db.mget(keys) if keys else [], strict=True):
            if raw is None:
                continue  # published and cleared meanwhile
            job = json.loads(raw)
            if self.clock() - float(job.get("queued_at", 0)) < min_age:
                continue
            order_id = int(key.removeprefix(OUTBOX_PREFIX))
            job.pop("queued_at", None)
            if not await self.publish(order_id, json.dumps(job).encode(), path="drained"):
                break  # mq still down: try the rest next pass
            sent += 1
        await self.flush()
        return sent

    async def run(
        self, stop: asyncio.Event, interval: float = DRAIN_INTERVAL, min_age: float = DRAIN_MIN_AGE
    ) -> None:
        """The background drainer, until `stop` is set."""
        while not stop.is_set():
            try:
                sent = await self.drain_once(min_age)
                if sent:
                    log.info("outbox: %d stranded e-mail job(s) put on mq", sent)
            except (StoreUnavailable, StoreError) as exc:
                log.debug("outbox drain skipped: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
