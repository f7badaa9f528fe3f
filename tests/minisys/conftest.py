"""Shared by the raw-socket tests (test_direct.py, test_direct_poller.py): run a test's
coroutine on each loop minisys/poller.py offers, and on a plain asyncio loop."""

from __future__ import annotations

import asyncio

import pytest

from minisys import poller

LOOPS = {
    "direct-selector": poller.new_event_loop,
    "serving-selector": lambda: poller.new_event_loop(serving=True),
    "plain-loop": None,
}


@pytest.fixture(params=list(LOOPS))
def run(request):
    """`run(coro_fn)`: run `coro_fn()` to its end on this parameter's loop."""
    factory = LOOPS[request.param]

    def run(coro_fn):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro_fn())

    return run
