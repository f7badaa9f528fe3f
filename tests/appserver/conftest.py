"""Shared fixtures for the appserver tests: a shop on in-memory stores, a fake clock,
a fake beanstalkd for the worker, and real third-party servers for the interop runs."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from appserver.memory import MemoryCache, MemoryDb, MemoryQueue
from appserver.seed import seed
from appserver.shop import Shop, build_shop
from appserver.stores import Stores
from minisys.testing import RealServer, beanstalkd, redis_server


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


class FakeJob:
    def __init__(self, job_id: int, body: bytes, ttr: int) -> None:
        self.id = job_id
        self.body = body
        self.ttr = ttr
        self.state = "ready"
        self.reserves = 0
        self.releases = 0
        self.last_delay = 0
        self.owner: object | None = None


class FakeBeanstalk:
    """Just enough of a beanstalkd (one tube, no clock) to drive the worker."""

    def __init__(self) -> None:
        self.jobs: dict[int, FakeJob] = {}
        self.touches = 0

    def put(self, body: bytes, ttr: int = 60) -> int:
        job = FakeJob(len(self.jobs) + 1, body, ttr)
        self.jobs[job.id] = job
        return job.id

    def in_state(self, state: str) -> list[FakeJob]:
        return [job for job in self.jobs.values() if job.state == state]

    async def connect(self) -> FakeSource:
        return FakeSource(self)


class FakeSource:
    def __init__(self, server: FakeBeanstalk) -> None:
        self.server = server

    def _mine(self, job_id: int) -> FakeJob | None:
        job = self.server.jobs.get(job_id)
        return job if job is not None and job.owner is self else None

    async def watch_only(self, tube: str) -> None:
        assert tube == "emails"

    async def reserve(self) -> FakeJob:
        while True:
            ready = self.server.in_state("ready")
            if ready:
                job = ready[0]
                job.state, job.owner = "reserved", self
                job.reserves += 1
                return job
            await asyncio.sleep(0.001)

    async def delete(self, job_id: int) -> bool:
        job = self._mine(job_id)
        if job is None:
            return False
        job.state, job.owner = "deleted", None
        return True

    async def release(self, job_id: int, pri: int, delay: int) -> bool:
        job = self._mine(job_id)
        if job is None:
            return False
        job.state, job.owner = "delayed" if delay else "ready", None
        job.releases += 1
        job.last_delay = delay
        return True

    async def bury(self, job_id: int, pri: int) -> bool:
        job = self._mine(job_id)
        if job is None:
            return False
        job.state, job.owner = "buried", None
        return True

    async def touch(self, job_id: int) -> bool:
        self.server.touches += 1
        return self._mine(job_id) is not None

    async def stats_job(self, job_id: int) -> dict[str, str] | None:
        job = self.server.jobs.get(job_id)
        if job is None:
            return None
        return {
            "id": str(job.id),
            "state": job.state,
            "ttr": str(job.ttr),
            "reserves": str(job.reserves),
            "releases": str(job.releases),
        }

    async def close(self) -> None:
        for job in self.server.jobs.values():
            if job.owner is self:
                job.state, job.owner = "ready", None


@pytest.fixture
def beanstalk() -> FakeBeanstalk:
    return FakeBeanstalk()


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (bash .ci/run installs it where apt exists)")


def real_redis() -> RealServer:
    """A throwaway redis-server (skip when missing); enter it with `with` to start it."""
    _require("redis-server")
    return redis_server()


def real_beanstalkd() -> RealServer:
    """A throwaway beanstalkd (skip when missing); enter it with `with` to start it."""
    _require("beanstalkd")
    return beanstalkd()


@pytest.fixture(scope="session")
def real_servers():
    """Factories for real redis-server and beanstalkd processes (skip when missing)."""
    return real_redis, real_beanstalkd
