"""The lb's loop (minisys/poller.py's ServingSelector): it waits again by itself only
while asyncio is idle.

Each test makes asyncio need its turn in one way while the spliced sockets alone would
keep the selector waiting (or busy) for seconds, and checks asyncio got it at once.
"""

import asyncio
import socket
import threading
import time

from minisys.poller import ServingLoopPolicy, ServingSelector, make_poller

# Far longer than any of these tests may take: a selector that missed its cue waits this.
LONG = 5.0
# What "at once" means here, with room for a busy 2-core machine.
PROMPT = 1.0


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    return a, b


def new_event_loop() -> asyncio.AbstractEventLoop:
    return ServingLoopPolicy().new_event_loop()  # what `python -m lb` runs on


def test_the_lb_loop_uses_the_serving_selector():
    loop = new_event_loop()
    try:
        assert isinstance(make_poller(loop), ServingSelector)
    finally:
        loop.close()


def test_a_handle_queued_by_a_spliced_callback_runs_at_once():
    async def main():
        loop = asyncio.get_running_loop()
        poller = make_poller(loop)
        a, b = _pair()
        done = loop.create_future()

        def readable():
            a.recv(100)
            loop.call_soon(done.set_result, "ran")  # asyncio must take its turn now

        poller.add_reader(a.fileno(), readable)
        await asyncio.sleep(0)  # the loop is now waiting in the selector (only a LONG timer)
        start = time.monotonic()
        b.send(b"x")
        assert await asyncio.wait_for(done, LONG) == "ran"
        assert time.monotonic() - start < PROMPT
        poller.remove_reader(a.fileno())
        a.close()
        b.close()

    asyncio.run(main())


def test_a_timer_set_by_a_spliced_callback_fires_on_time():
    async def main():
        loop = asyncio.get_running_loop()
        poller = make_poller(loop)
        a, b = _pair()
        fired = loop.create_future()

        def readable():
            a.recv(100)
            loop.call_later(0.02, lambda: fired.set_result(time.monotonic()))  # before LONG

        poller.add_reader(a.fileno(), readable)
        guard = loop.call_later(LONG, lambda: None)  # asyncio's own timeout is LONG
        await asyncio.sleep(0)
        start = time.monotonic()
        b.send(b"x")
        when = await asyncio.wait_for(fired, LONG)
        assert when - start < PROMPT
        guard.cancel()
        poller.remove_reader(a.fileno())
        a.close()
        b.close()

    asyncio.run(main())


def test_timers_fire_while_spliced_sockets_stay_busy():
    async def main():
        loop = asyncio.get_running_loop()
        poller = make_poller(loop)
        a, b = _pair()
        calls = [0]

        def writable():  # a writable socket is ready on every wait: never idle
            calls[0] += 1

        poller.add_writer(a.fileno(), writable)
        start = time.monotonic()
        await asyncio.sleep(0.05)
        assert time.monotonic() - start < PROMPT
        assert calls[0] > 1  # the selector did serve the busy socket meanwhile
        poller.remove_writer(a.fileno())
        a.close()
        b.close()

    asyncio.run(main())


def test_a_stop_from_a_spliced_callback_stops_the_loop():
    loop = new_event_loop()
    poller = make_poller(loop)
    a, b = _pair()

    def readable():
        a.recv(100)
        loop.stop()

    poller.add_reader(a.fileno(), readable)
    loop.call_later(LONG, loop.stop)  # only if the selector missed it
    b.send(b"x")
    start = time.monotonic()
    try:
        loop.run_forever()
        assert time.monotonic() - start < PROMPT
    finally:
        poller.remove_reader(a.fileno())
        loop.close()
        a.close()
        b.close()


def test_a_handle_from_another_thread_runs_at_once():
    """What minisys/ticker.py does: call_soon_threadsafe wakes the loop through its self-pipe."""

    async def main():
        loop = asyncio.get_running_loop()
        poller = make_poller(loop)
        a, b = _pair()
        poller.add_reader(a.fileno(), lambda: a.recv(100))  # a spliced socket, quiet
        done = loop.create_future()
        start = time.monotonic()
        threading.Timer(0.02, loop.call_soon_threadsafe, (done.set_result, "ran")).start()
        assert await asyncio.wait_for(done, LONG) == "ran"
        assert time.monotonic() - start < PROMPT
        poller.remove_reader(a.fileno())
        a.close()
        b.close()

    asyncio.run(main())
