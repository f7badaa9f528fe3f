"""Shared fixtures for the appserver tests: a shop on in-memory stores, a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from appserver.memory import MemoryCache, MemoryDb, MemoryQueue
from appserver.seed import seed
from appserver.shop import Shop, build_shop
from appserver.stores import Stores


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def shop(clock: FakeClock) -> Shop:
    stores = Stores(MemoryCache(clock=clock), MemoryDb(), MemoryQueue())
    shop = build_shop(stores, clock=clock, monotonic=clock)
    asyncio.run(seed(stores.db))
    return shop


@pytest.fixture
def run():
    """Run one coroutine to completion (the tests are plain functions)."""
    return asyncio.run
