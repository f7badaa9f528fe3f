"""The gateway's callback fast path: `UpstreamPool.forward_now` and `Gateway.handle_now`.

Each ends as its coroutine twin (`forward`, `handle`) would: the same member picked, the
same attempts and breaker accounting, retries continued on the general path, the same
answer for the client. A scripted transport answers from callbacks (no sockets).
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.breaker import BreakerSettings
from gateway.config import Upstream, build
from gateway.pipeline import Gateway
from gateway.upstream import UpstreamPool, UpstreamReset
from minisys.http.head import Headers
from minisys.http.message import Request


class Reply:
    def __init__(self, status=200, body=b"ok"):
        self.status, self.reason, self.body = status, "", body
        self.headers = Headers([("Content-Type", "text/plain")])


class Script:
    """Per port: "ok", "reset" or "cold" (no warm connection: send_now declines)."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sent = []  # (port, "now" or "async")
        self.cancelled = []

    def outcome(self, port):
        if self.behaviour.get(port, "ok") == "reset":
            raise UpstreamReset("closed")
        return Reply()

    async def send(self, host, port, method, target, headers, body, timeout):
        self.sent.append((port, "async"))
        return self.outcome(port)

    def send_now(self, host, port, method, target, headers, body, timeout, then):
        if self.behaviour.get(port) == "cold":
            return None
        self.sent.append((port, "now"))

        def answer():
            try:
                then(self.outcome(port), None)
            except UpstreamReset as exc:
                then(None, exc)

        asyncio.get_running_loop().call_soon(answer)
        return lambda: self.cancelled.append(port)


def pool(behaviour, members=3, threshold=5):
    settings = Upstream(
        "svc", [("127.0.0.1", 9000 + i) for i in range(members)], 1.0, 10.0, 15.0,
        2, 8, BreakerSettings(threshold, 10.0), "", 5.0,
    )  # fmt: skip
    return UpstreamPool(settings, Script(behaviour))


def forward_now(p, method="GET"):
    """forward_now's outcome (result, error), or None if it declined."""

    async def go():
        outcome = asyncio.get_running_loop().create_future()
        cancel = p.forward_now(method, "/", [], b"", lambda r, e: outcome.set_result((r, e)))
        return None if cancel is None else await outcome

    return asyncio.run(go())


def test_forward_now_accounts_a_success_as_forward_does():
    p = pool({})
    result, error = forward_now(p)
    assert error is None and result.response.status == 200
    assert [(a.member, a.outcome) for a in result.attempts] == [("127.0.0.1:9000", "ok")]
    assert p.members[0].requests == 1 and p.members[0].active == 0
    forward_now(p)
    assert p.transport.sent == [(9000, "now"), (9001, "now")]  # round robin goes on


def test_a_declined_forward_now_leaves_the_ring_for_the_general_path():
    p = pool({9000: "cold"})
    assert forward_now(p) is None
    assert p.members[0].active == 0 and p.members[0].requests == 0
    asyncio.run(p.forward("GET", "/", [], b""))
    assert p.transport.sent == [(9000, "async")]  # the same member, not the next


def test_a_reset_get_is_retried_on_another_member_through_forward():
    p = pool({9000: "reset"})
    result, error = forward_now(p)
    assert error is None
    assert [a.outcome for a in result.attempts] == ["reset", "ok"]
    assert p.transport.sent == [(9000, "now"), (9001, "async")]
    assert p.members[0].failures == 1 and p.breaker.failures == 0


def test_a_reset_post_is_not_retried_and_counts_against_the_breaker():
    p = pool({9000: "reset"})
    result, error = forward_now(p, "POST")
    assert result is None and isinstance(error, UpstreamReset)
    assert [a.outcome for a in error.attempts] == ["reset"]
    assert p.breaker.failures == 1 and p.transport.sent == [(9000, "now")]


def test_an_open_breaker_declines_so_the_general_path_answers_503():
    p = pool({}, threshold=1)
    p.breaker.record(False, p.clock())
    assert p.breaker.state == "open"
    assert forward_now(p) is None and p.transport.sent == []


def test_cancel_releases_the_member_and_the_connection():
    p = pool({})

    async def go():
        cancel = p.forward_now("GET", "/", [], b"", lambda r, e: pytest.fail("called back"))
        assert p.members[0].active == 1
        cancel()
        assert p.members[0].active == 0 and p.transport.cancelled == [9000]

    asyncio.run(go())


# --- the pipeline --------------------------------------------------------------------------

CONFIG = {
    "upstreams": {"app": {"members": ["127.0.0.1:1"]}},
    "routes": [{"name": "app", "path": "/", "upstream": "app", "auth": True}],
    "consumers": {
        "fast": {"keys": ["key-fast-1"], "limit": {"quota": 100, "window": 1}},
        "capped": {"keys": ["key-capped-1"], "max_concurrency": 2},
    },
}


class Conn:
    """What handle_now needs of the server connection: answer_now and cancel_now."""

    trusted_hop = False

    def __init__(self):
        self.answers = []
        self.cancel_now = None

    def answer_now(self, request, response):
        self.answers.append(response)


def request(key=None):
    headers = [("Host", "x"), ("X-Request-ID", "rid-1")]
    if key:
        headers.append(("X-API-Key", key))
    return Request("GET", "/p?q=1", Headers(headers), peer=("192.0.2.9", 1))


def both_ways(key, behaviour=None):
    """(handle's response, handle_now's response, how handle_now sent it) for one request."""
    script = Script(behaviour or {})
    gw = Gateway(build(CONFIG), transport_factory=lambda settings: script)

    async def go():
        slow = await gw.handle(request(key))
        conn = Conn()
        assert gw.handle_now(request(key), conn)
        while not conn.answers:
            await asyncio.sleep(0)
        return slow, conn.answers[0], script.sent[-1][1] if script.sent else None

    return asyncio.run(go())


# What one more token spent may change between two requests: the bucket's level.
LEVEL = {"RateLimit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


def comparable(response):
    headers = [(n, v) for n, v in response.headers.items() if n not in LEVEL]
    return response.status, headers, response.body


def test_handle_now_answers_as_handle_does_from_the_clients_callback():
    slow, fast, how = both_ways("key-fast-1")
    assert how == "now" and fast.status == 200
    assert comparable(fast) == comparable(slow)
    assert "X-RateLimit-Remaining" in fast.headers and fast.headers["X-Request-ID"] == "rid-1"


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("wrong-key-1", 401)])
def test_handle_now_answers_a_refusal_at_once(key, status):
    slow, fast, how = both_ways(key)
    assert how is None and comparable(fast) == comparable(slow) and fast.status == status


@pytest.mark.parametrize(
    ("key", "behaviour"),
    [("key-capped-1", {}), ("key-fast-1", {1: "cold"})],
    ids=["capped", "cold"],
)
def test_handle_now_finishes_the_rare_cases_on_the_general_path(key, behaviour):
    slow, fast, how = both_ways(key, behaviour)
    assert how == "async" and fast.status == slow.status == 200
