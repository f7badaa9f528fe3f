"""minisys.poller's alarms and ServingSelector: timers and callbacks still run on time.

Each test runs on DirectSelector, ServingSelector and a plain loop (LoopPoller).
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from minisys import poller

LOOPS = {
    "direct-selector": poller.new_event_loop,
    "serving-selector": lambda: poller.new_event_loop(serving=True),
    "plain-loop": None,
}


@pytest.fixture(params=list(LOOPS))
def run(request):
    def run(coro_fn):
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            return runner.run(coro_fn())

    return run


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
