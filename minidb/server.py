"""The minidb server: the storage engine behind the shared RESP engine, acking after fsync.

Journey: the appserver's RESP client connects to `:6381`; `minisys.resp` parses each
request, checks arity and answers connection commands; `MinidbEngine` below queues
commands of clients inside MULTI (`transactions.py`), runs data commands (`commands.py`)
against a `WriteSet`, commits the write set as one batch (`engine.py`) and returns the
reply — or, under `fsync=always`, the reply held on a `ReplyGate` that the fsync covering
the write releases (for every waiting client at once). The RESP server keeps pipelined
replies in order behind held ones.

    SET k v ─▶ WriteSet ─▶ DB.apply (write(2), lsn 41) ─▶ Durability.after(41, +OK)
                                                          │ fsync thread: one fdatasync
    SET j w ─▶ … lsn 42 ─▶ Durability.after(42, +OK) ─────┘ covers 41 and 42 (group commit)

Why an fsync thread: `fdatasync` blocks for milliseconds; on the event loop it would stop
every client. In a thread it overlaps with new requests, and every write that arrives
while one fsync runs is covered by the next: under load one fsync serves dozens of
clients, which is how a Python server gets near Redis's `appendfsync always` numbers.
On a disk whose fdatasync takes well under a millisecond the hop to the thread costs more
than the fsync, so there it runs on the loop (`Durability`, last paragraph).

Simpler than the real thing: one database (SELECT 0 only), strings only, no expiry, no
replication; `BGREWRITEAOF` merges the data files instead of rewriting an AOF.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from minisys.logs import get_logger
from minisys.resp.engine import CommandTable, Engine, Session
from minisys.resp.server import Held, ReplyGate, RespServer, resp_server
from minisys.resp.values import CommandError, RespError, SimpleString
from minisys.server import ServerConfig

from . import commands, transactions
from .engine import DB, DatabaseClosed, open_db
from .record import RecordTooLarge
from .sync import SyncFailed
from .writeset import WriteSet

log = get_logger("minidb.server")

OK = SimpleString("OK")
# Redis's proto-max-bulk-len default: the largest value a client may send.
MAX_BULK = 512 * 1024 * 1024


# How much each new measurement of the writers' return time moves its running average.
RETURN_TIME_WEIGHT = 0.25
# Gather only when an fsync takes this many times longer than the writers take to come
# back: at Y just over T the two ways measured about even, and starting at once keeps
# the disk busy, so we want a clear win before holding an fsync back.
GATHER_MARGIN = 2.0
# An fsync measured at most this long runs on the event loop itself, not in the thread:
# every other client waits that long, about a third of a GET's p50 at 50 clients here.
INLINE_FSYNC_SECONDS = 0.001


class Durability:
    """Turns an lsn into "reply now" or a reply held on `gate` until an fsync covers it.

    At most one fsync runs at a time (in `_executor`, or on the loop when the disk is
    fast: see the last paragraph); when it finishes, every waiter it covered gets its
    reply. When should the next one start?

    - At once: the disk works while the loop handles the replies and the next commands.
      But with many clients they split into two groups that take turns - the ~25 that
      arrived during fsync k ride k+1, while the 25 that k released come back during
      k+1 and wait for k+2 - so each fsync covers half of them (measured: 24.7 of 50).
    - After gathering (PostgreSQL's commit_delay): hold it until the writers that k
      released are back, so that one fsync covers all of them; the disk idles meanwhile.

    Per cycle that is N/2 writes per fsync time Y, against N writes per Y + T, where T
    is how long the released writers take to come back (their round trip plus our CPU
    for their next commands). Gathering wins when Y > T, so the rule is Y > 2T (a
    margin, GATHER_MARGIN): both are measured as we go (T even when not gathering), and
    a gathering never waits longer than Y. Measured with redis-benchmark -c 50 and an
    fsync made 5 ms slower (alternating with the old code, 3 runs each): 25 -> 34-37
    writes per fsync, +0/+17/+43% req/s. With 0.5 ms the rule does not gather (25 per
    fsync, req/s within noise); gathering always there had cost 6-27%.

    A fast disk turns this around. When the last fsync took at most INLINE_FSYNC_SECONDS
    it runs on the event loop, like Redis's `appendfsync always` in its `beforeSleep`:
    the loop stops for that long, but the hop to the thread and back (a queue put, a
    thread wake-up, the GIL changing hands twice, a self-pipe write and an extra turn of
    the loop) cost more CPU than an 80 µs fdatasync takes. Group commit still happens:
    the fsync covers every write of the loop turn before it. Measured with the
    appserver's order commands (WATCH+MGET, MULTI…EXEC), fsync=always, on this VM's
    disk (fdatasync ~80 µs): callgrind instructions of the server per order 682k -> 514k
    with one client, 486k -> 450k with 8 (user-space only; the thread hop's futex and
    pipe syscalls come on top). The first fsync, and the next after any slow one, runs
    in the thread, where the fsync alone is timed (`_disk_seconds`), so a disk that
    slows down is taken off the loop again and one that recovers comes back.

    Until replies were released by a `ReplyGate`, a fast fsync went to the thread
    whenever writers the last fsync released were still on their way back, so that
    fsync k overlapped the loop's work on group k+1 (0.1 ms injected: median 18.6k ->
    22.6k SET/s). That paid while each reply cost a future, a `call_soon` and a loop
    turn; with the gate it no longer does: redis-benchmark -c 50 SET, alternating
    pairs, server CPU per SET on this VM's disk 18.4-25.2 us with the overlap vs
    16.8-19.6 us without (SET/s higher without in 3 of 4 pairs); with an fsync made
    0.1 ms slower on tmpfs 23.6-23.8 vs 17.2-19.0 us, 0.3 ms slower 20-21 vs 17-19.3 us
    (SET/s 22.2k/24.5k -> 25.5k/28.7k). So now only the disk's speed decides.

    A slow fsync's outcome comes back from the thread by one `call_soon_threadsafe`
    (callgrind, SET c50 with the fsync forced into the thread: 100.5k -> 97.7k
    instructions of server CPU per SET against `run_in_executor`).
    """

    def __init__(self, db: DB) -> None:
        self.db = db
        self._always = db.fsync == "always"
        self._commit = db.commit
        # Replies wait in the connections' queues as `Held(gate, lsn, reply)`; a finished
        # fsync releases them all with one `gate.release(synced)`.
        self.gate = ReplyGate()
        self._waiting = 0  # writes whose replies wait for an fsync...
        self._newest = 0  # ...the newest one's lsn (what the next fsync must cover)...
        self._covering = 0  # ...and how many of them the running fsync covers
        # The round's held +OK (every write until the next fsync starts shares it).
        self._held: Held | None = None
        self._running = False
        self._scheduled = False  # a call_soon(_start) is pending
        self._timer: asyncio.TimerHandle | None = None  # a gathering's deadline
        self._fsync_seconds = 0.0  # Y: how long the last fsync took (thread hop included)
        self._return_seconds = 0.0  # T: running average of the writers' return time
        self._released = 0  # writers the last fsync released...
        self._arrivals = 0  # ...and writes that arrived since then
        self._expected = 0  # released + still waiting: a full gathering
        self._finished_at = 0.0
        self._started_at = 0.0
        # The last fsync alone, without the hops; starting above the limit sends the
        # first fsync to the thread, where it is measured.
        self._disk_seconds = INLINE_FSYNC_SECONDS * 2
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="minidb-fsync")

    def after(self, lsn: int, reply: object) -> object:
        """`reply` now if write `lsn` is durable already, else held until an fsync covers it.

        Every write of a round (those that arrive before its fsync starts) is covered by
        that fsync, so writes of one round with the same reply (every SET's +OK) share
        one `Held`, whose ticket grows to the newest of them: one object fewer per write
        (with the counters below for the deque of lsns it replaces: callgrind, server SET
        fsync=always c50, 51.0k -> 48.8k instructions per SET). A write
        is never answered before an fsync covers it, since the ticket is never below
        its lsn.
        """
        if not self._always or self._commit.synced >= lsn:
            return reply
        self._waiting += 1
        self._newest = lsn
        self._arrivals += 1
        if self._arrivals == self._released:  # everyone the last fsync released is back
            self._note_return(asyncio.get_running_loop().time() - self._finished_at)
        if not (self._running or self._scheduled):  # (checked here too: a call less per write)
            self._schedule(asyncio.get_running_loop())
        held = self._held
        if held is not None and held.value is reply:
            held.ticket = lsn
            return held
        held = self._held = Held(self.gate, lsn, reply)
        return held

    def _note_return(self, seconds: float) -> None:
        self._return_seconds += (seconds - self._return_seconds) * RETURN_TIME_WEIGHT

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the next fsync soon, or let it gather first (see the class docstring)."""
        if self._running or self._scheduled:
            return
        fast = self._disk_seconds <= INLINE_FSYNC_SECONDS
        gather = not fast and self._fsync_seconds > GATHER_MARGIN * self._return_seconds
        if not gather or self._waiting >= self._expected:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            # After this loop iteration: writes from every client whose data is already
            # here join this fsync instead of waiting for the next one.
            self._scheduled = True
            loop.call_soon(self._start)
        elif self._timer is None:
            self._timer = loop.call_later(self._fsync_seconds, self._start)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._scheduled and self._arrivals < self._released:
            # A gathering timed out: the writers take at least that long to come back.
            self._note_return(loop.time() - self._finished_at)
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running or not self._waiting:
            return
        self._running = True
        self._started_at = loop.time()
        # This fsync covers every write that waits now; later ones are the next round's.
        target = self._newest
        self._covering = self._waiting
        self._held = None
        disk = self._disk_seconds
        if disk > INLINE_FSYNC_SECONDS:
            self._executor.submit(self._timed_sync, target).add_done_callback(
                lambda done: self._hand_back(loop, done.exception())
            )
            return
        error = None
        try:
            self._timed_sync(target)
        except Exception as exc:  # SyncFailed: the same outcome as from the thread
            error = exc
        self._finished(loop, error)

    def _hand_back(self, loop: asyncio.AbstractEventLoop, error: BaseException | None) -> None:
        """In the fsync thread: pass the outcome to the loop (one call_soon_threadsafe,
        lighter than run_in_executor's asyncio future wrapped around the thread's)."""
        try:
            loop.call_soon_threadsafe(self._finished, loop, error)
        except RuntimeError:
            pass  # the loop has closed (shutdown): nobody is left to reply to

    def _timed_sync(self, lsn: int) -> None:
        started = time.perf_counter()
        self.db.commit.wait(lsn)
        self._disk_seconds = time.perf_counter() - started

    def _finished(self, loop: asyncio.AbstractEventLoop, error: BaseException | None) -> None:
        self._running = False
        self._finished_at = loop.time()
        self._fsync_seconds = self._finished_at - self._started_at
        synced = self.db.commit.synced
        # Every waiting write once the fsync covered them all, or failed (the error
        # answers every held reply); else the next round's wait for the next fsync.
        everyone = error is not None or self._newest <= synced
        released = self._waiting if everyone else self._covering
        self._waiting -= released
        self._released, self._arrivals = released, 0
        self._expected = released + self._waiting
        if error is not None:
            log.error("fsync failed, refusing further writes: %s", error)
        # Writes every released client's replies now, in this call (a failure answers
        # every reply still held with the error).
        self.gate.release(synced, None if error is None else RespError(f"ERR {error}"))
        if self._waiting:
            self._schedule(loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._executor.shutdown(wait=True)


class MinidbEngine(Engine):
    """The RESP engine plus minidb's keyspace, transactions and durability."""

    def __init__(self, db: DB, **options: object) -> None:
        self.db = db
        self.watches = transactions.WatchRegistry()
        self.durability = Durability(db)
        self.data_handlers: dict[str, Callable] = {}
        self._reader = WriteSet(db)  # read-only commands never buffer anything
        super().__init__(self._table(), state=db, component="minidb", **options)
        self._install_info_and_config()

    # ------------------------------------------------------------- sessions

    def close_session(self, session: Session) -> None:
        txn = session.state.get("txn")
        if txn is not None:
            self.watches.unwatch_all(txn)
        super().close_session(session)

    def _table(self) -> CommandTable:
        table = CommandTable()
        for name, arity, flags, handler, (first, last, step) in commands.DATA_COMMANDS:
            self.data_handlers[name] = handler
            keys = dict(first_key=first, last_key=last, key_step=step)
            table.add(name, self._wrap(handler, flags), arity, flags, group="string", **keys)
        for name, arity, flags, handler in transactions.TXN_COMMANDS:
            table.add(name, handler, arity, flags, group="transactions")
        for name, arity, flags, handler in _ADMIN_COMMANDS:
            table.add(name, handler, arity, flags, group="server")
        return table

    def _wrap(self, handler: Callable, flags: tuple[str, ...]) -> Callable:
        if "write" not in flags:
            reader = self._reader

            def read(session: Session, argv: list[bytes]) -> object:
                return handler(reader, argv)

            read.__doc__ = handler.__doc__
            return read
        db = self.db

        def write(session: Session, argv: list[bytes]) -> object:
            ws = WriteSet(db)
            reply = handler(ws, argv)
            return self.commit(ws, reply) if ws.ops else reply

        write.__doc__ = handler.__doc__
        return self._plain_set(write) if handler is commands.set_ else write

    def _plain_set(self, general: Callable) -> Callable:
        """`SET key value` without options, the hottest write, straight to `DB.apply_put`.

        The same record, keydir update, WATCH notice and reply as the general path (a
        one-op write set committed as one record), minus building the WriteSet and the op
        tuples (with `DB.apply_put`). Callgrind, SET through `engine.execute` in-process:
        36.6k -> 29.2k instructions; the whole server under redis-benchmark -c 50:
        69.8k -> 62.4k per SET with fsync=no, 94-95k -> 90.1k with fsync=always.
        """
        apply_put, touch, after = self.db.apply_put, self.watches.touch, self.durability.after
        watched = self.watches.by_key

        def set_(session: Session, argv: list[bytes]) -> object:
            if len(argv) != 3:
                return general(session, argv)  # options
            key = argv[1]
            try:
                lsn = apply_put(key, argv[2])
            except RecordTooLarge:
                return general(session, argv)  # its error (nothing was written)
            except (DatabaseClosed, SyncFailed) as exc:
                return RespError(f"ERR {exc}")
            if watched:  # (touch's own first test, without its call)
                touch((key,))
            return after(lsn, OK)

        set_.__doc__ = general.__doc__
        return set_

    def commit(self, ws: WriteSet, reply: object) -> object:
        """Append the write set as one batch, tell WATCHers, reply once durable."""
        try:
            lsn = self.db.apply(ws.ops)
        except (DatabaseClosed, SyncFailed) as exc:
            return RespError(f"ERR {exc}")
        self.watches.touch(ws.touched)
        return self.durability.after(lsn, reply)

    def run_transaction(
        self, session: Session, queue: list[tuple[Callable | None, list[bytes]]]
    ) -> object:
        """EXEC's body: every queued command against one WriteSet, then one batch."""
        ws = WriteSet(self.db)
        replies: list[object] = []
        waiting = False
        for handler, argv in queue:
            if handler is None:
                reply = self.execute(session, argv)  # PING, INFO, SAVE… inside MULTI
                waiting = waiting or hasattr(reply, "__await__")
            else:
                try:
                    reply = handler(ws, argv)
                except RespError as exc:
                    reply = exc  # Redis runs the rest; the error is this command's reply
            replies.append(reply)
        result: object = replies
        if ws.ops:
            result = self.commit(ws, replies)
        if waiting:
            return _gather(result, replies)
        # Usually `result` is the replies or Durability's held reply of them: handing that
        # on as it is spares a coroutine and a Task per EXEC (an order's commands
        # under callgrind, fsync=always: 733k -> 682k instructions of server CPU).
        return result

    # ------------------------------------------------------------- INFO, CONFIG

    def _install_info_and_config(self) -> None:
        db = self.db
        self.info.add("persistence", self._persistence)
        self.info.add(
            "keyspace", lambda: {"db0": f"keys={len(db)},expires=0,avg_ttl=0"} if len(db) else {}
        )
        self.config.add("appendonly", "yes")
        self.config.add("appendfsync", db.fsync)
        self.config.add("dir", str(db.dir.resolve()))

    def _persistence(self) -> dict[str, object]:
        s = self.db.stats()
        error = self.db.merge_state.last_error
        return {
            "loading": 0,
            "aof_enabled": 1,
            "appendfsync": s.fsync_policy,
            "aof_rewrite_in_progress": int(s.merging),
            "aof_last_bgrewrite_status": "err" if error else "ok",
            "minidb_files": s.files,
            "minidb_active_file": s.active_file,
            "minidb_data_bytes": s.data_bytes,
            "minidb_live_bytes": s.live_bytes,
            "minidb_dead_bytes": s.dead_bytes,
            "minidb_writes": s.writes,
            "minidb_fsyncs": s.fsyncs,
            "minidb_merges": s.merges,
            "minidb_last_merge_time": int(s.last_merge_at or -1),
            "minidb_last_merge_seconds": f"{s.last_merge_seconds or 0:.3f}",
            "minidb_last_merge_reclaimed_bytes": s.last_merge_reclaimed_bytes,
            "minidb_recovery_seconds": f"{s.recovery_seconds:.3f}",
            "minidb_files_from_hints": s.files_from_hints,
            "minidb_truncated_bytes": s.truncated_bytes,
            "minidb_corrupt_files": ",".join(s.corrupt_files) or "none",
        }


async def _gather(result: object, replies: list[object]) -> object:
    """Wait for the EXEC batch's fsync and for any awaitable reply inside the array."""
    if hasattr(result, "__await__"):
        await result
    return [await r if hasattr(r, "__await__") else r for r in replies]


async def _in_thread(fn: Callable[[], object], reply: object) -> object:
    try:
        await asyncio.get_running_loop().run_in_executor(None, fn)
    except (OSError, DatabaseClosed) as exc:
        return RespError(f"ERR {exc}")
    return reply


def save(session: Session, argv: list[bytes]) -> object:
    """Synchronously make every write durable (an fsync, whatever the policy)."""
    return _in_thread(session.engine.db.sync, OK)


def bgsave(session: Session, argv: list[bytes]) -> object:
    """Make every write durable in the background."""
    db = session.engine.db
    asyncio.get_running_loop().run_in_executor(None, db.sync).add_done_callback(
        lambda done: done.exception() and log.error("BGSAVE failed: %s", done.exception())
    )
    return SimpleString("Background saving started")


def bgrewriteaof(session: Session, argv: list[bytes]) -> object:
    """Start a background merge (compaction) of the data files."""
    if not session.engine.db.merge(wait=False):
        raise CommandError("ERR Background append only file rewriting already in progress")
    return SimpleString("Background append only file rewriting started")


def compact(session: Session, argv: list[bytes]) -> object:
    """Merge the data files now; reply once the merge is done."""
    db = session.engine.db

    async def run() -> object:
        try:
            merged = await asyncio.get_running_loop().run_in_executor(None, db.merge)
        except Exception as exc:
            return RespError(f"ERR merge failed: {exc}")
        return OK if merged else RespError("ERR a merge is already in progress")

    return run()


_ADMIN_COMMANDS = [
    ("save", 1, ("admin", "noscript"), save),
    ("bgsave", -1, ("admin", "noscript"), bgsave),
    ("bgrewriteaof", 1, ("admin", "noscript"), bgrewriteaof),
    ("compact", 1, ("admin", "noscript"), compact),
]


def minidb_server(
    config: ServerConfig,
    data_dir: str | Path,
    *,
    requirepass: str | None = None,
    **db_options: object,
) -> RespServer:
    """A RESP server over a freshly opened database in `data_dir`."""
    db = open_db(data_dir, **db_options)
    engine = MinidbEngine(db, requirepass=requirepass)
    return resp_server("minidb", config, engine, max_bulk=MAX_BULK)
