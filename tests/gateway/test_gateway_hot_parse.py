"""hot_parse.py takes a head only if the general parser reads it the same way.

Plain heads are mutated byte by byte (spaces, tabs, bare CR/LF, NUL, colons, obs-text,
case) and the result is given to both: whenever `scan_request` / `scan_response` takes
the bytes, the general parser (minisys.http.codec) must accept them as one whole message
with the same method, target, fields, framing and body. And the pieces used elsewhere -
`take_if_allowed` and the client's `Slots` - behave as the code they stand in for.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.hot_parse import REQUEST_KINDS, RESPONSE_KINDS, joined, scan_request, scan_response
from gateway.token_bucket import BucketTable, Rate
from minisys.http.client_now import Slots
from minisys.http.client_result import CLIENT_LIMITS
from minisys.http.codec import RequestParser, ResponseParser
from minisys.http.head import HttpError, Limits

LIMITS = Limits(max_body=64)
REQUEST = (
    b"POST /api/a?b=1 HTTP/1.1\r\nHost: example.test\r\nX-API-Key: k1\r\n"
    b"User-Agent: t/1 (x)\r\nX-Request-ID: r-1\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\nAccept: */*\r\n\r\nhi"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: s\r\nDate: Mon, 30 Nov 2026 04:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
    b"X-Thing: a b\r\n\r\nok"
)
TRICKY = [b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b"\x00", b"\x80", b"A", b"a", b"0", b"-"]


@st.composite
def mutated(draw, base: bytes):
    data = base
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        if draw(st.booleans()):
            data = data[:at] + draw(st.sampled_from(TRICKY)) + data[at:]
        else:
            data = data[:at] + data[at + 1 :]
    return data


def passthrough(items, kinds, keep=()) -> str:
    """The fields the hot path forwards untouched: not special, or special but kept."""
    return "".join(
        f"{n}: {v}\r\n" for n, v in items if n.lower().encode() not in kinds or n.lower() in keep
    )


@settings(max_examples=400)
@given(data=mutated(REQUEST))
def test_a_request_taken_hot_is_read_alike_by_the_general_parser(data):
    scan = scan_request(data, LIMITS)
    if scan is None:
        return
    parser = RequestParser(LIMITS)
    parser.feed(data)
    try:
        message = parser.next_message()
    except HttpError as exc:
        raise AssertionError(f"hot took what the parser refuses: {exc}") from None
    assert message is not None and parser.buffered == 0 and parser.current is None
    head, body = message
    assert head.version == "1.1" and head.keep_alive and not head.expect_continue
    assert head.method == scan.method.decode()
    path, _, query = head.target.partition("?")
    assert (path, query) == (scan.path.decode(), scan.query.decode())
    h = head.headers
    assert h.get("host") == scan.host.decode("latin-1")
    for name, value in (("x-request-id", scan.request_id), ("x-api-key", scan.api_key),
                        ("authorization", scan.authorization)):  # fmt: skip
        assert h.get(name) == (None if value is None else value.decode("latin-1"))
    kept = passthrough(h, REQUEST_KINDS, ("host", "x-api-key", "authorization"))
    assert joined(scan.lines).decode("latin-1") == kept
    assert body == scan.body


@settings(max_examples=400)
@given(data=mutated(RESPONSE))
def test_a_response_taken_hot_is_read_alike_by_the_general_parser(data):
    scanned = scan_response(data, CLIENT_LIMITS)
    if scanned is None:
        return
    status, line, fields, body = scanned
    parser = ResponseParser(CLIENT_LIMITS)
    parser.expect_response("GET")
    parser.feed(data)
    try:
        message = parser.next_response()
    except HttpError as exc:
        raise AssertionError(f"hot took what the parser refuses: {exc}") from None
    assert message is not None and parser.buffered == 0
    head, parsed_body = message
    assert head.keep_alive and head.version == "1.1"
    assert head.status == status and line == f"HTTP/1.1 {status} {head.reason}\r\n".encode()
    assert fields.decode("latin-1") == passthrough(head.headers, RESPONSE_KINDS)
    assert parsed_body == body


def test_plain_heads_are_taken():
    assert scan_request(REQUEST, LIMITS) is not None
    assert scan_response(RESPONSE, CLIENT_LIMITS) is not None


@given(
    steps=st.lists(st.tuples(st.integers(0, 3_000_000_000), st.booleans()), max_size=40),
    burst=st.integers(1, 4),
)
def test_take_if_allowed_is_take_when_a_token_is_there_and_changes_nothing_otherwise(steps, burst):
    rate = Rate(2, 1.0, burst)
    ours, reference = BucketTable(rate), BucketTable(rate)
    now = 0
    for gap, _ in steps:
        now += gap
        before = dict(ours._buckets)
        got = ours.take_if_allowed("k", now)
        if reference.level("k", now) >= 1:
            assert got == reference.take("k", now)
        else:
            assert got is None and dict(ours._buckets) == before
            reference = BucketTable(rate)  # resync: the reference's state is ours
            reference._buckets.update({k: list(v) for k, v in ours._buckets.items()})


def test_slots_hand_a_released_slot_to_the_longest_waiter_and_survive_cancellation():
    async def main():
        slots = Slots(1)
        await slots.acquire()
        first = asyncio.ensure_future(slots.acquire())
        second = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        slots.release()
        await asyncio.sleep(0)
        assert second.done() and slots.free == 0
        slots.release()
        assert slots.free == 1 and not slots.locked()
        slots.take()
        third = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # handed to `third`, which is cancelled before it runs
        third.cancel()
        await asyncio.gather(third, return_exceptions=True)
        assert slots.free == 1 and not slots.waiters

    asyncio.run(main())
