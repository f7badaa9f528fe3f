"""MULTI / EXEC / DISCARD / WATCH / UNWATCH: optimistic transactions, one batch on disk.

Journey: the appserver commits an order with `WATCH stock:1`, `MULTI`, `DECRBY stock:1 2`,
`SET order:9 …`, `EXEC`, retrying when EXEC answers a null array. `server.py`'s engine
hands every command of a client that is inside MULTI to `in_multi` here; EXEC then
runs the queue against one `WriteSet` (`writeset.py`) and commits it as ONE atomic batch.

Per-connection state (`TxnState`, kept in `session.state["txn"]`):

    state      command            reply                              next
    ---------  -----------------  ---------------------------------  ---------
    normal     MULTI              +OK                                queuing
    normal     EXEC / DISCARD     -ERR EXEC without MULTI (…)        normal
    normal     WATCH k…           +OK (remember k…)                  normal
    queuing    MULTI              -ERR MULTI calls can not be nested queuing
    queuing    WATCH k…           -ERR WATCH inside MULTI is not …   queuing
    queuing    unknown/arity err  the error; transaction marked bad  queuing
    queuing    any other command  +QUEUED                            queuing
    queuing    DISCARD            +OK, forget queue and watches      normal
    queuing    EXEC, marked bad   -EXECABORT Transaction discarded…  normal
    queuing    EXEC, watch dirty  *-1 (null array), nothing runs     normal
    queuing    EXEC               array of each command's reply      normal

How WATCH knows: like Redis's `touchWatchedKey`, every committed write set reports the
keys it changed to the `WatchRegistry`, which marks each transaction watching one of them
dirty. A failed `SET … NX` changes nothing and so dirties nothing. A watched key written
by this same client also counts, as in Redis.

Simpler than the real thing: no RESET command, no `CLIENT_DIRTY_CAS` on expiry (nothing
expires) and no rejection of commands that Redis flags `no-multi`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from minisys.resp.engine import Session, unknown_command_error
from minisys.resp.values import NULL_ARRAY, CommandError, RespError, SimpleString

if TYPE_CHECKING:
    from .server import MinidbEngine

OK = SimpleString("OK")
QUEUED = SimpleString("QUEUED")
# A client cannot make the server hold an unbounded queue of commands.
MAX_QUEUED_COMMANDS = 100_000
# Commands that act on the transaction itself instead of being queued.
CONTROL = frozenset({"exec", "discard", "multi", "watch", "quit", "reset"})


@dataclass(eq=False)
class TxnState:
    # (data handler or None, argv) per queued command; None: not inside MULTI.
    queue: list[tuple[Callable | None, list[bytes]]] | None = None
    bad: bool = False  # a queued command was rejected: EXEC must abort
    watched: set[bytes] = field(default_factory=set)
    dirty: bool = False  # a watched key changed since WATCH


def txn_of(session: Session) -> TxnState:
    txn = session.state.get("txn")
    if txn is None:
        txn = session.state["txn"] = TxnState()
    return txn


class WatchRegistry:
    """key -> transactions watching it; told about every committed change."""

    def __init__(self) -> None:
        # The SET fast path (server.py) reads it to skip `touch` while nobody watches.
        self.by_key: dict[bytes, set[TxnState]] = {}

    def watch(self, txn: TxnState, key: bytes) -> None:
        txn.watched.add(key)
        self.by_key.setdefault(key, set()).add(txn)

    def unwatch_all(self, txn: TxnState) -> None:
        for key in txn.watched:
            watchers = self.by_key.get(key)
            if watchers is not None:
                watchers.discard(txn)
                if not watchers:
                    del self.by_key[key]
        txn.watched.clear()
        txn.dirty = False

    def touch(self, keys: set[bytes]) -> None:
        by_key = self.by_key
        if not by_key:
            return
        for key in keys if len(keys) <= len(by_key) else [k for k in by_key if k in keys]:
            for txn in by_key.get(key, ()):
                txn.dirty = True

    def __len__(self) -> int:
        return len(self.by_key)


def in_multi(engine: MinidbEngine, txn: TxnState, session: Session, argv: list[bytes]) -> object:
    """Inside MULTI: run EXEC, DISCARD… now; check any other command like Redis does and
    queue it with its data handler (EXEC then calls that without looking it up again)."""
    cmd = engine.table.lookup(argv[0])
    name = cmd.name if cmd is not None else argv[0].lower().decode("utf-8", "replace")
    if name in CONTROL:
        # Run as outside MULTI; the transaction goes on queueing unless it ended
        # (EXEC, DISCARD; a nested MULTI or a WATCH is refused and it goes on).
        session.intercept = None
        try:
            return engine.execute(session, argv)
        finally:
            if txn.queue is not None:
                session.intercept = queueing
    error = None
    if cmd is None:
        error = unknown_command_error(argv)
    elif (cmd.arity > 0 and len(argv) != cmd.arity) or len(argv) < -cmd.arity:
        error = f"ERR wrong number of arguments for '{cmd.name}' command"
    elif len(txn.queue) >= MAX_QUEUED_COMMANDS:
        error = f"ERR more than {MAX_QUEUED_COMMANDS} commands queued in one MULTI"
    if error is not None:
        txn.bad = True
        return RespError(error)
    txn.queue.append((engine.data_handlers.get(name), argv))
    return QUEUED


def multi(session: Session, argv: list[bytes]) -> object:
    """Mark the start of a transaction block."""
    txn = txn_of(session)
    if txn.queue is not None:
        raise CommandError("ERR MULTI calls can not be nested")
    txn.queue = []
    txn.bad = False
    session.intercept = queueing  # Engine.execute hands every command to it from now on
    return OK


def queueing(session: Session, argv: list[bytes]) -> object:
    """The session's intercept between MULTI and EXEC (see `Session.intercept`)."""
    return in_multi(session.engine, session.state["txn"], session, argv)


def discard(session: Session, argv: list[bytes]) -> object:
    """Discard all commands issued after MULTI."""
    txn = txn_of(session)
    if txn.queue is None:
        raise CommandError("ERR DISCARD without MULTI")
    txn.queue = None
    txn.bad = False
    session.engine.watches.unwatch_all(txn)
    return OK


def watch(session: Session, argv: list[bytes]) -> object:
    """Watch the given keys to determine execution of the MULTI/EXEC block."""
    txn = txn_of(session)
    if txn.queue is not None:
        raise CommandError("ERR WATCH inside MULTI is not allowed")
    for key in argv[1:]:
        session.engine.watches.watch(txn, key)
    return OK


def unwatch(session: Session, argv: list[bytes]) -> object:
    """Forget about all watched keys."""
    session.engine.watches.unwatch_all(txn_of(session))
    return OK


def exec_(session: Session, argv: list[bytes]) -> object:
    """Execute all commands issued after MULTI, as one atomic batch."""
    engine: MinidbEngine = session.engine
    txn = txn_of(session)
    if txn.queue is None:
        raise CommandError("ERR EXEC without MULTI")
    queue, txn.queue = txn.queue, None
    bad, dirty, txn.bad = txn.bad, txn.dirty, False
    engine.watches.unwatch_all(txn)
    if bad:
        raise CommandError("EXECABORT Transaction discarded because of previous errors.")
    if dirty:
        return NULL_ARRAY
    return engine.run_transaction(session, queue)


TXN_COMMANDS: list[tuple[str, int, tuple[str, ...], Callable]] = [
    ("multi", 1, ("noscript", "loading", "stale", "fast"), multi),
    ("exec", 1, ("noscript", "loading", "stale"), exec_),
    ("discard", 1, ("noscript", "loading", "stale", "fast"), discard),
    ("watch", -2, ("noscript", "loading", "stale", "fast"), watch),
    ("unwatch", 1, ("noscript", "loading", "stale", "fast"), unwatch),
]
