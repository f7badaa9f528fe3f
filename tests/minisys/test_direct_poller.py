"""minisys.poller's alarms and ServingSelector: timers and callbacks still run on time.

Each test runs on DirectSelector, ServingSelector and a plain loop (LoopPoller).
"""

from __future__ import annotations

import asyncio
import socket
import time

from minisys import poller


def test_an_alarm_rings_once_not_early(run):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        p = poller.make_poller(loop)
        rang: list[float] = []
        done = asyncio.Event()

        def ring() -> None:
            rang.append(loop.time())
            done.set()

        when = loop.time() + 0.05
        p.set_alarm(ring, when)
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.06)
        assert len(rang) == 1 and rang[0] >= when

    run(main)


def test_alarms_can_be_replaced_and_cleared(run):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        p = poller.make_poller(loop)
        rang: list[str] = []
        done = asyncio.Event()

        def first() -> None:
            rang.append("first")

        def second() -> None:
            rang.append("second")
            done.set()

        p.set_alarm(first, loop.time() + 0.01)
        p.clear_alarm(first)
        p.clear_alarm(first)  # clearing what is not set is harmless
        p.set_alarm(second, loop.time() + 10)
        p.set_alarm(second, loop.time() + 0.02)  # replaces the later one
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.03)
        assert rang == ["second"]

    run(main)


def test_an_alarm_may_set_itself_again(run):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        p = poller.make_poller(loop)
        count = 0
        done = asyncio.Event()

        def tick() -> None:
            nonlocal count
            count += 1
            if count < 3:
                p.set_alarm(tick, loop.time() + 0.005)
            else:
                done.set()

        p.set_alarm(tick, loop.time())
        await asyncio.wait_for(done.wait(), 5)
        assert count == 3

    run(main)


def test_callbacks_from_direct_sockets_reach_asyncio(run):
    """A handle or timer queued by a direct callback runs at once, not at the next event."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        p = poller.make_poller(loop)
        a, b = socket.socketpair()
        a.setblocking(False)
        soon = asyncio.Event()
        later = asyncio.Event()

        def readable() -> None:
            a.recv(100)
            loop.call_soon(soon.set)
            loop.call_later(0.01, later.set)

        p.add_reader(a.fileno(), readable)
        started = time.monotonic()
        b.send(b"x")
        await asyncio.wait_for(soon.wait(), 5)
        await asyncio.wait_for(later.wait(), 5)
        assert time.monotonic() - started < 2
        p.remove_reader(a.fileno())
        a.close()
        b.close()

    run(main)


def test_an_alarm_wakes_a_task_waiting_on_it(run):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        p = poller.make_poller(loop)
        fired = asyncio.get_running_loop().create_future()
        p.set_alarm(lambda: fired.set_result(True), loop.time() + 0.01)
        assert await asyncio.wait_for(fired, 5)

    run(main)


def test_call_after_runs_once_after_the_wake_ups_callbacks(run):
    """Two sockets readable in one wake-up: call_after's callback runs once, after both."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        p = poller.make_poller(loop)
        pairs = [socket.socketpair() for _ in range(2)]
        order: list[str] = []
        done = asyncio.Event()

        def flush() -> None:
            order.append("flush")
            done.set()

        def readable(sock: socket.socket, name: str) -> None:
            sock.recv(100)
            order.append(name)
            if "flush" not in order and order.count("scheduled") == 0:
                order.append("scheduled")
                p.call_after(flush)

        for i, (a, _) in enumerate(pairs):
            a.setblocking(False)
            p.add_reader(a.fileno(), lambda a=a, i=i: readable(a, f"read{i}"))
        for _, b in pairs:
            b.send(b"x")  # both bytes are there before the loop polls again
        await asyncio.wait_for(done.wait(), 5)
        reads = [x for x in order if x.startswith("read")]
        assert order.count("flush") == 1 and len(reads) == 2
        if not isinstance(p, poller.LoopPoller):  # one wake-up saw both sockets
            assert order[-1] == "flush"
        for a, b in pairs:
            p.remove_reader(a.fileno())
            a.close()
            b.close()

    run(main)


def test_call_after_from_asyncio_code_runs_before_the_loop_waits(run):
    """Called from a task (not from a socket's callback) it runs without any event,
    and work it hands to asyncio runs too."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        p = poller.make_poller(loop)
        done = asyncio.Event()
        ran: list[str] = []

        def second() -> None:
            ran.append("second")
            loop.call_soon(done.set)

        def first() -> None:
            ran.append("first")
            p.call_after(second)  # one added while they run runs too

        p.call_after(first)
        await asyncio.wait_for(done.wait(), 5)
        assert ran == ["first", "second"]

    run(main)
