"""Member choice, retries and the breaker, with a scripted fake transport (no sockets)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from gateway.breaker import BreakerSettings
from gateway.config import Upstream
from gateway.upstream import (
    PASSIVE_EJECT_S,
    ConnectFailed,
    NoMember,
    UpstreamPool,
    UpstreamReset,
    UpstreamTimeout,
)


@dataclass
class Resp:
    status: int


class Script:
    """Per-member behaviour: "ok", "connect", "reset", "slow" or an int status."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.calls = []

    async def send(self, host, port, method, target, headers, body, timeout):
        self.calls.append(port)
        what = self.behaviour.get(port, "ok")
        if what == "connect":
            raise ConnectFailed("refused")
        if what == "reset":
            raise UpstreamReset("closed")
        if what == "slow":
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.sleep(3600)
            except TimeoutError:
                raise UpstreamTimeout("slow") from None
        return Resp(what if isinstance(what, int) else 200)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def pool(behaviour, retries=2, members=3, read_timeout=10.0, threshold=5):
    settings = Upstream(
        "svc", [("127.0.0.1", 9000 + i) for i in range(members)], 1.0, read_timeout, 15.0,
        retries, 8, BreakerSettings(threshold, 10.0), "", 5.0,
    )  # fmt: skip
    clock = Clock()
    return UpstreamPool(settings, Script(behaviour), clock), clock


def forward(p, method="GET"):
    return asyncio.run(p.forward(method, "/", [], b""))


def test_round_robin_over_members():
    p, _ = pool({})
    for _ in range(6):
        forward(p)
    assert p.transport.calls == [9000, 9001, 9002, 9000, 9001, 9002]


def test_connect_failure_retries_another_member_even_for_post_and_ejects():
    p, clock = pool({9000: "connect"})
    result = forward(p, "POST")
    assert [a.outcome for a in result.attempts] == ["connect", "ok"]
    assert result.member.port == 9001
    # The ejected member is skipped until its ejection ends.
    for _ in range(4):
        forward(p)
    assert 9000 not in p.transport.calls[2:]
    clock.now += PASSIVE_EJECT_S
    p.transport.behaviour = {}
    for _ in range(3):
        forward(p)
    assert 9000 in p.transport.calls[-3:]


def test_reset_is_retried_only_for_idempotent_methods():
    p, _ = pool({9000: "reset"})
    assert forward(p, "GET").member.port == 9001
    p, _ = pool({9000: "reset"})
    with pytest.raises(UpstreamReset):
        forward(p, "POST")
    assert p.transport.calls == [9000]


def test_retries_are_bounded():
    p, _ = pool({9000: "connect", 9001: "connect", 9002: "connect"}, retries=1)
    with pytest.raises(ConnectFailed) as info:
        forward(p)
    assert len(info.value.attempts) == 2


def test_all_members_down_still_tries_them_all():
    p, _ = pool({9000: "connect", 9001: "connect", 9002: "connect"}, retries=5)
    with pytest.raises(ConnectFailed):
        forward(p)
    assert sorted(p.transport.calls) == [9000, 9001, 9002]


def test_read_timeout_is_not_retried():
    p, _ = pool({9000: "slow"}, read_timeout=0.01)
    with pytest.raises(UpstreamTimeout):
        forward(p)
    assert p.transport.calls == [9000]


def test_5xx_answers_are_returned_not_retried():
    p, _ = pool({9000: 503})
    assert forward(p).response.status == 503
    assert p.transport.calls == [9000]


def test_breaker_opens_after_failures_and_recovers():
    p, clock = pool({9000: 502, 9001: 502, 9002: 502}, threshold=3)
    for _ in range(3):
        forward(p)
    with pytest.raises(NoMember) as info:
        forward(p)
    assert info.value.retry_after == 10.0
    assert len(p.transport.calls) == 3
    clock.now += 10
    p.transport.behaviour = {}
    assert forward(p).response.status == 200  # the probe
    assert p.breaker.state == "closed"


def test_health_checks_rise_and_fall():
    p, _ = pool({9001: 500})
    p.settings.health_path = "/healthz"
    for _ in range(3):
        asyncio.run(p.check_health())
    assert [m.healthy for m in p.members] == [True, False, True]
    for _ in range(4):
        forward(p)
    assert 9001 not in p.transport.calls[-4:]
    p.transport.behaviour = {}
    asyncio.run(p.check_health())
    assert not p.members[1].healthy
    asyncio.run(p.check_health())
    assert p.members[1].healthy
    assert p.stats()["members"][1]["healthy"]
