"""Replies that many connections wait on together: `Held` and its `ReplyGate`.

On the request's journey this sits between a layer whose replies wait for one shared
event and the RESP server that writes them. minidb's group commit is the user: a SET's
record is appended at once, but its `+OK` may leave only once an fsync covers it, and one
fsync covers the writes of every client that arrived meanwhile.

The handler returns `Held(gate, ticket, reply)` (minidb: the write's lsn and +OK). The
connection (`server.py`) queues it behind any earlier replies and tells the gate it is
waiting; when the layer calls `gate.release(n)` (an fsync covered every lsn up to n) the
gate drains each waiting connection once, in that same call: no future, no `call_soon`,
no extra loop turn per reply — Redis's `beforeSleep`, which writes every client's
pending replies after its fsync.

    SET a ─▶ Held(gate, 41, +OK) ─▶ conn A's queue, gate.waiting[A] = 41
    SET b ─▶ Held(gate, 42, +OK) ─▶ conn B's queue, gate.waiting[B] = 42
    fsync covers 42 ─▶ gate.release(42) ─▶ A._drain(), B._drain(): one send each

(minidb shares one `Held` among a round's +OKs, its ticket raised to 42: see `Held`.)

Simpler than the real thing: Redis keeps a list of clients with pending writes and
walks it before every sleep; we keep only the connections whose head reply waits on the
gate, each with the ticket it waits for.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from minisys.resp.values import RespError

if TYPE_CHECKING:
    from minisys.resp.server import RespConnection


class Held:
    """A reply the server holds back until its gate passes `ticket` (see `ReplyGate`).

    Several held replies with the same value may be one `Held` whose ticket the layer
    raises (never lowers) until the event that will pass it begins: minidb's writes of one
    fsync round share one +OK, so no reply leaves before the fsync of its own write.
    """

    __slots__ = ("gate", "ticket", "value")

    def __init__(self, gate: ReplyGate, ticket: int, value: object) -> None:
        self.gate = gate
        self.ticket = ticket
        self.value = value

    def done(self) -> bool:
        return self.ticket <= self.gate.passed or self.gate.error is not None

    def outcome(self) -> object:
        """The reply to send: the value once passed, the gate's error if it failed first."""
        if self.ticket <= self.gate.passed:
            return self.value
        return self.gate.error

    def __await__(self):  # for code outside the server (EXEC's gather, tests)
        return self.gate.wait(self).__await__()


class ReplyGate:
    """Replies of many connections held until one event releases them all (group commit).

    `release(n)` passes every ticket up to n and drains once each waiting connection
    whose first held ticket it passed; `release(n, error)` also answers every held reply
    past n with `error`. A connection registers (with the ticket of its first held reply)
    when it queues a Held reply, and again whenever a drain stops at one that has not
    passed, so every connection whose queue has one at its head is registered. After an
    error the gate stays failed.

    Why the ticket: with the fsync in a thread, writes that arrive during fsync k wait
    for k+1, and releasing k must not visit them (a wasted drain each: 75k drains for
    50k SETs under redis-benchmark -c 50 before, 50k after).
    """

    def __init__(self) -> None:
        self.passed = 0
        self.error: RespError | None = None
        self.waiting: dict[RespConnection, int] = {}  # -> its first held reply's ticket
        self._futures: list[tuple[Held, asyncio.Future]] = []

    def release(self, ticket: int, error: RespError | None = None) -> None:
        """Pass every ticket up to `ticket`, and with `error` fail every one after it."""
        if ticket > self.passed:
            self.passed = ticket
        if error is not None:
            self.error = error
        self._drain_all()

    def wait(self, held: Held) -> asyncio.Future:
        """A future of `held`'s reply, for whoever awaits it instead of the server."""
        future = asyncio.get_running_loop().create_future()
        if held.done():
            future.set_result(held.outcome())
        else:
            self._futures.append((held, future))
        return future

    def _drain_all(self) -> None:
        waiting = self.waiting
        passed = self.passed
        if self.error is not None or max(waiting.values(), default=0) <= passed:
            # Every waiting connection (the usual case: one fsync covers every write
            # of its loop turn): taken in C, ~30 bytecodes per connection less than
            # picking them one by one.
            ready = list(waiting)
            waiting.clear()
        else:
            ready = [conn for conn, ticket in waiting.items() if ticket <= passed]
            for conn in ready:
                del waiting[conn]
        for conn in ready:
            conn._drain()  # may register it again, for a later held reply
        if self._futures:
            futures, self._futures = self._futures, []
            for held, future in futures:
                if not held.done():
                    self._futures.append((held, future))
                elif not future.done():
                    future.set_result(held.outcome())
