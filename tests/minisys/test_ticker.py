"""minisys.ticker: periodic callbacks on the loop's thread, with nothing left in its schedule."""

import asyncio
import threading

import pytest

from minisys.server import Connection, Server, ServerConfig
from minisys.testing import async_wait_until, wait_until
from minisys.ticker import Ticker


def holds(condition):
    """A plain condition as the coroutine predicate async_wait_until polls."""

    async def check():
        return condition()

    return check


def test_ticks_run_on_the_loop_thread_and_leave_no_timer_armed():
    async def main():
        loop = asyncio.get_running_loop()
        threads = []
        ticker = Ticker(loop, 0.01, lambda: threads.append(threading.get_ident())).start()
        await async_wait_until(holds(lambda: len(threads) >= 3), timeout=10)
        # What the Ticker is for: between ticks the loop has no timer scheduled.
        assert not loop._scheduled  # type: ignore[attr-defined]
        ticker.stop()
        return threads

    threads = asyncio.run(main())
    assert set(threads) == {threading.get_ident()}


def test_no_tick_after_stop_and_the_thread_ends():
    async def main():
        loop = asyncio.get_running_loop()
        ticks = []
        ticker = Ticker(loop, 0.005, lambda: ticks.append(1)).start()
        await async_wait_until(holds(lambda: len(ticks) >= 1), timeout=10)
        ticker.stop()  # on the loop's thread, as servers do
        seen = len(ticks)
        await async_wait_until(holds(lambda: not ticker.running), timeout=10)
        for _ in range(10):  # let anything already queued run
            await asyncio.sleep(0)
        return seen, len(ticks)

    seen, after = asyncio.run(main())
    assert after == seen


def test_a_failing_callback_is_reported_and_ticking_goes_on():
    async def main():
        loop = asyncio.get_running_loop()
        errors, calls = [], []
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))

        def tick():
            calls.append(1)
            raise ValueError("boom")

        ticker = Ticker(loop, 0.005, tick).start()
        await async_wait_until(holds(lambda: len(calls) >= 2), timeout=10)
        ticker.stop()
        return errors

    errors = asyncio.run(main())
    assert errors and all(isinstance(e, ValueError) for e in errors)


def test_the_thread_ends_by_itself_when_the_loop_closes():
    loop = asyncio.new_event_loop()
    ticker = Ticker(loop, 0.005, lambda: None).start()
    loop.close()
    wait_until(lambda: not ticker.running, timeout=10)


def test_interval_must_be_positive():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="positive"):
            Ticker(loop, 0, lambda: None)
    finally:
        loop.close()


def test_a_kernel_server_idle_sweeping_keeps_no_timer_armed():
    class Echo(Connection):
        def on_data(self, data: bytes) -> None:
            self.write(data)

    async def main():
        loop = asyncio.get_running_loop()
        server = Server("ticker-test", ServerConfig(port=0, idle_timeout=30), Echo)
        await server.start()
        try:
            assert server._sweeper is not None and server._sweeper.running
            assert not loop._scheduled  # type: ignore[attr-defined]
        finally:
            await server.drain_and_close()
        assert server._sweeper._stopped.is_set()  # drain stopped it

    asyncio.run(main())
